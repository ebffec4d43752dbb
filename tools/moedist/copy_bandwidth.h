// The machine's own copy bandwidth, measured in the same run as the operators so that ratios stay meaningful on
// shared machines whose absolute speed drifts.
#pragma once

namespace moedist::tool {

// Best-of-`repeats` memcpy bandwidth in GB/s (10^9 bytes per second) for buffers of `bytes`, with `threads`
// threads copying disjoint halves at once (one thread per rank, as the operators run).
double copyBandwidthGBs(double bytes, int threads, int repeats = 5);

}  // namespace moedist::tool
