# The PyTorch baseline (torch_pipeline.py, bench/README.md) on the small case that tool_bench_write_case writes
# (fixture bench_case: W 4, Bs 16, H 1024, K 4, M 8):
# - bench_torch_pipeline: its outputs must be the reference model's, bit for bit;
# - bench_torch_pipeline_check_fails: the same case with two bytes of rank 1's expected xOut changed must report a
#   failed check (the check can fail).
# Included from bench/CMakeLists.txt. Skipped where the interpreter cannot import torch and numpy.
if(MOEDIST_BUILD_TESTS AND Python_EXECUTABLE AND TARGET moedist_tool)
  execute_process(COMMAND ${Python_EXECUTABLE} -c "import torch, numpy" RESULT_VARIABLE moedist_torch_rc
                  OUTPUT_QUIET ERROR_QUIET)
  if(moedist_torch_rc EQUAL 0)
    set(case ${PROJECT_BINARY_DIR}/bench-case-small)
    set(script ${CMAKE_CURRENT_LIST_DIR}/torch_pipeline.py)
    add_test(NAME bench_torch_pipeline
             COMMAND ${Python_EXECUTABLE} ${script} --case ${case} --iterations 3 --warmup 1
                     --json ${PROJECT_BINARY_DIR}/bench-torch-pipeline.json)

    set(bad_case ${PROJECT_BINARY_DIR}/bench-case-small-bad-x_out)
    add_test(NAME bench_torch_pipeline_check_fails
             COMMAND bash -c "rm -rf '${bad_case}' && cp -r '${case}' '${bad_case}' && \
printf '\\177\\177' | dd of='${bad_case}/rank1/x_out.bin' bs=1 seek=2050 count=2 conv=notrunc status=none && \
exec '${Python_EXECUTABLE}' '${script}' --case '${bad_case}' --iterations 1 --warmup 0 \
--json '${PROJECT_BINARY_DIR}/bench-torch-pipeline-bad.json'")

    set_tests_properties(bench_torch_pipeline PROPERTIES PASS_REGULAR_EXPRESSION "torch_pipeline: check pass")
    set_tests_properties(bench_torch_pipeline_check_fails PROPERTIES PASS_REGULAR_EXPRESSION
                                                                     "torch_pipeline: check fail")
    set_tests_properties(bench_torch_pipeline bench_torch_pipeline_check_fails PROPERTIES
                         LABELS "tool;python" FIXTURES_REQUIRED bench_case TIMEOUT 300)
  else()
    message(STATUS "moedist: ${Python_EXECUTABLE} cannot import torch and numpy: bench_torch_pipeline skipped")
  endif()
endif()
