// The concrete engines, named in one place.
#include "comm/registry.h"

#include "comm/inproc/inproc_engine.h"

namespace moedist::comm {

Status createInprocEngines(const std::string& name, int worldSize, std::vector<std::unique_ptr<Engine>>* engines) {
  return inproc::createEngines(name, worldSize, engines);
}

}  // namespace moedist::comm
