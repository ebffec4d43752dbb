// The concrete engines, named in one place.
#include "comm/registry.h"

#include "comm/copying_engine.h"
#include "comm/inproc/inproc_engine.h"
#include "util/check.h"
#include "util/env.h"

namespace moedist::comm {

Status createInprocEngines(const std::string& name, int worldSize, std::vector<std::unique_ptr<Engine>>* engines) {
  MOEDIST_RETURN_IF_ERROR(inproc::createEngines(name, worldSize, engines));
  if (util::envInprocCopy())
    for (auto& e : *engines) e = std::make_unique<CopyingEngine>(std::move(e));
  return okStatus();
}

}  // namespace moedist::comm
