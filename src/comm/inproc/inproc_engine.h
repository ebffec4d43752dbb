// The in-process engine: the ranks of a communicator are threads of one process and share its memory.
//
// A thin transport under the shared call protocol (comm/protocol.h): every rank has a mailbox (a mutex, a condition
// variable and a list of events) in the communicator's Group; posting an event appends it to the mailbox of each
// other participant, and poll() sleeps on the rank's own mailbox until something arrives or the deadline passes.
// Headers are shared between the events of one post, never copied per peer, and regions are the caller's own
// memory: peers read them in place (mapped() is always true), so a row crosses memory once.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "comm/engine.h"
#include "moedist/status.h"

namespace moedist::comm::inproc {

// Creates the engines of a new in-process communicator; see createInprocEngines() in comm/registry.h.
Status createEngines(const std::string& name, int worldSize, std::vector<std::unique_ptr<Engine>>* engines);

}  // namespace moedist::comm::inproc
