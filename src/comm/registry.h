// The concrete engines, named in one place.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "comm/engine.h"
#include "comm/shm/shm_engine.h"  // the shared-memory engine: createEngine, newUniqueId, allocate (no system headers)
#include "moedist/status.h"

namespace moedist::comm {

// Creates an in-process communicator of `worldSize` ranks called `name` (unique among live in-process
// communicators) and returns one engine per rank. The communicator lives while any of its engines does.
Status createInprocEngines(const std::string& name, int worldSize, std::vector<std::unique_ptr<Engine>>* engines);

}  // namespace moedist::comm
