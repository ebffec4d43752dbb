// `moedist`: the command-line tool.
//
//   moedist run   dispatch -> stand-in expert FFN -> combine on in-process ranks, every output checked bit for bit
//                 against the reference model, with a readable summary (configuration, rows received per rank,
//                 match status, time per call next to the machine's copy bandwidth). With --engine mpi, under
//                 mpirun: every rank an MPI process, then the same scenario in-process, both timed side by side.
//                 With --engine shm: every rank a forked process over shared memory, then in-process, side by side.
//   moedist bench every engine next to the hand-written MPI and PyTorch pipelines (bench/), the reference kernels
//                 and the machine's copy bandwidth, over a sweep of shapes, in one run (tools/moedist/bench.h).
#include <CLI/CLI.hpp>

#include "bench.h"
#include "run.h"

int main(int argc, char** argv) {
  CLI::App app{
      "moedist: expert-parallel MoE dispatch and combine (CANN's MoeDistributeDispatchV3 and "
      "MoeDistributeCombineAddRmsNormV2) on ordinary machines"};
  app.require_subcommand(1);
  moedist::tool::RunFlags f;
  CLI::App* runCmd = app.add_subcommand(
      "run",
      "dispatch -> stand-in expert FFN -> combine on in-process ranks (or MPI processes: --engine mpi under mpirun), "
      "checked against the reference model");
  runCmd->add_option("-w,--world-size", f.worldSize, "EP ranks (epWorldSize)")->capture_default_str();
  runCmd->add_option("-b,--tokens", f.tokens, "tokens per rank (Bs)")->capture_default_str();
  runCmd->add_option("--hidden", f.hidden, "hidden size H (1024..8192)")->capture_default_str();
  runCmd->add_option("-k,--topk", f.topk, "experts per token K")->capture_default_str();
  runCmd->add_option("-m,--experts", f.experts, "MoE experts (moeExpertNum)")->capture_default_str();
  runCmd->add_option("--zero-experts", f.zeroExperts, "zero experts")->capture_default_str();
  runCmd->add_option("--copy-experts", f.copyExperts, "copy experts")->capture_default_str();
  runCmd->add_option("--const-experts", f.constExperts, "const experts")->capture_default_str();
  runCmd->add_option("--special-fraction", f.specialFraction, "share of slots routed to special experts")
      ->capture_default_str();
  runCmd->add_option("--shared-experts", f.sharedExperts, "shared experts (sharedExpertNum)")->capture_default_str();
  runCmd->add_option("--shared-expert-ranks", f.sharedExpertRanks, "ranks hosting shared experts")
      ->capture_default_str();
  runCmd->add_option("--tp", f.tp, "tpWorldSize: 0 or 1 (no TP), 2 (TP pairs: 2*W ranks)")->capture_default_str();
  runCmd->add_option("--quant-mode", f.quantMode, "dispatch quantMode: 0 or 2 (dynamic int8)")->capture_default_str();
  runCmd->add_flag("--smooth-scales", f.smoothScales, "pass smooth-quant scales (quantMode 2)");
  runCmd->add_option("--comm-quant-mode", f.commQuantMode, "combine commQuantMode: 0 or 2 (int8 transport)")
      ->capture_default_str();
  runCmd->add_option("--mask", f.mask, "xActiveMask: none, 1d or 2d")
      ->check(CLI::IsMember({"none", "1d", "2d"}))
      ->capture_default_str();
  runCmd->add_option("--global-bs", f.globalBs, "globalBs attribute (0: Bs * W)")->capture_default_str();
  runCmd->add_option("--expert-token-nums-type", f.expertTokenNumsType, "0 cumulative, 1 per expert")
      ->capture_default_str();
  runCmd->add_flag("--fp16", f.fp16, "x in fp16 instead of bf16");
  runCmd->add_flag("--elastic", f.elastic, "scale-in: drop ranks 2-5 of 8 (the middle half of other sizes)");
  runCmd->add_option("--remove-ranks", f.removeRanks, "scale-in: drop these ranks")->delimiter(',');
  runCmd->add_flag("--no-shared-expert-x", f.noSharedX, "do not pass sharedExpertX to combine");
  runCmd->add_flag("--strided", f.strided, "pass the inputs as strided (non-contiguous) views");
  runCmd->add_option("--layers", f.layers, "dispatch + combine repetitions (timing: best layer)")
      ->capture_default_str();
  runCmd->add_option("--warmup", f.warmup, "untimed dispatch + combine repetitions before the timed ones")
      ->capture_default_str();
  runCmd->add_option("--json", f.json, "write every figure, the configuration and the verdict to this file as JSON");
  runCmd
      ->add_option("--check-layers", f.checkLayers,
                   "compare every layer's outputs with the reference model, or the first layer's only (for timing: "
                   "the checks between layers slow the calls that follow them)")
      ->check(CLI::IsMember({"all", "first"}))
      ->capture_default_str();
  runCmd->add_flag("--engine-only", f.engineOnly,
                   "--engine mpi or shm: run that engine only, without the in-process engine side by side");
  runCmd->add_option("--kernel-threads", f.kernelThreads, "kernel threads per rank")->capture_default_str();
  runCmd->add_option("--timeout-ms", f.timeoutMs, "deadline of every cross-rank wait")->capture_default_str();
  runCmd->add_option("--seed", f.seed, "input data seed")->capture_default_str();
  runCmd->add_flag("--no-check", f.noCheck, "skip the comparison with the reference model");
  runCmd
      ->add_option("--engine", f.engine,
                   "inproc: ranks as threads of this process; mpi: one MPI process per rank (run under mpirun with "
                   "-np W, or 2*W with --tp 2), then the same run in-process on process 0, side by side; shm: one "
                   "process per rank over shared memory, forked by this one, then in-process, side by side")
      ->check(CLI::IsMember({"inproc", "mpi", "shm"}))
      ->capture_default_str();
  runCmd->add_flag("--no-baseline", f.noBaseline, "skip the baseline run with the scalar reference kernels");
  runCmd->add_flag("--staging", f.staging,
                   "keep x and the expert rows in the caller's memory; with --engine shm and mpi each call then copies "
                   "them into the shared segment or window (default: allocate them with memAlloc, no staging copy)");
  moedist::tool::BenchFlags b;
  CLI::App* benchCmd = app.add_subcommand(
      "bench",
      "the operators on every engine next to the hand-written MPI and PyTorch pipelines, the reference kernels and "
      "the copy bandwidth, over a sweep of shapes, in one run");
  benchCmd->add_option("--preset", b.preset, "decode, prefill, seed or scale (instead of the shape lists)")
      ->check(CLI::IsMember({"decode", "prefill", "seed", "scale"}));
  benchCmd->add_option("-w,--world-size", b.worldSizes, "EP ranks (a list: -w 2,4,8)")
      ->delimiter(',')
      ->capture_default_str();
  benchCmd->add_option("-b,--tokens", b.tokens, "tokens per rank (Bs; a list)")->delimiter(',')->capture_default_str();
  benchCmd->add_option("--hidden", b.hiddens, "hidden size H (a list)")->delimiter(',')->capture_default_str();
  benchCmd->add_option("-k,--topk", b.topks, "experts per token K (a list)")->delimiter(',')->capture_default_str();
  benchCmd->add_option("-m,--experts", b.experts, "MoE experts (a list; 0: 256 or the largest multiple of W below)")
      ->delimiter(',')
      ->capture_default_str();
  benchCmd->add_option("--engines", b.engines, "inproc, shm, mpi (default: those built)")->delimiter(',');
  benchCmd->add_option("--baselines", b.baselines, "mpi_pipeline, torch_pipeline, ref (default: those available)")
      ->delimiter(',');
  benchCmd->add_option("--iterations", b.iterations, "timed calls per runner")->capture_default_str();
  benchCmd->add_option("--warmup", b.warmup, "untimed calls before them")->capture_default_str();
  benchCmd
      ->add_option("--rounds", b.rounds,
                   "run every runner this many times per point, taking turns, and pool their timed iterations (the "
                   "drift of a shared machine then falls on every runner alike)")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  benchCmd->add_flag("--no-check", b.noCheck, "skip the comparison with the reference model");
  benchCmd->add_option("--json", b.json, "write every figure, the configuration and the machine to this file");
  benchCmd->add_option("--work-dir", b.workDir, "where cases and logs go (default: a temporary folder)");
  benchCmd->add_option("--max-processes", b.maxProcesses, "runners with a process per rank skip larger world sizes")
      ->capture_default_str();
  benchCmd->add_option("--timeout", b.timeoutSeconds, "seconds a runner may take at one point")->capture_default_str();
  benchCmd->add_option("--mpirun", b.mpirun, "the MPI launcher")->capture_default_str();
  benchCmd
      ->add_option("--hostfile", b.hostfile,
                   "run the MPI engine and the MPI baseline across the hosts of this file (mpirun --hostfile)")
      ->check(CLI::ExistingFile);
  benchCmd->add_option("--mpirun-args", b.mpirunArgs,
                       "more flags for mpirun, separated by spaces (for example \"--mca btl_tcp_if_include eth0\")");
  benchCmd->add_option("--python", b.python, "the Python with torch, for torch_pipeline")->capture_default_str();
  benchCmd->add_option("--mpi-pipeline", b.mpiPipeline, "the MPI baseline program (default: this build's)");
  benchCmd->add_option("--torch-pipeline", b.torchPipeline,
                       "the PyTorch baseline script (default: this source tree's)");
  benchCmd->add_option("--seed", b.seed, "input data seed")->capture_default_str();
  benchCmd->add_option("--write-case", b.writeCase,
                       "write the first point's problem for the baselines into DIR (bench/README.md) and exit");
  CLI11_PARSE(app, argc, argv);
  if (benchCmd->parsed()) return moedist::tool::runBench(b);
  if (runCmd->parsed() && f.engine == "mpi") return moedist::tool::runMpi(f);
  if (runCmd->parsed() && f.engine == "shm") return moedist::tool::runShm(f);
  if (runCmd->parsed()) return moedist::tool::runInProcess(f);
  return 0;
}
