#include "util/thread_pool.h"

#include <algorithm>

namespace moedist::util {

ThreadPool::ThreadPool(int threads) {
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { workerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::parallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  if (workers_.empty() || n <= grain) {
    fn(0, n);
    return;
  }
  const int64_t parts = std::min<int64_t>(threads(), (n + grain - 1) / grain);
  std::unique_lock<std::mutex> lock(mu_);
  job_ = &fn;
  jobSize_ = n;
  chunk_ = (n + parts - 1) / parts;
  nextBegin_ = 0;
  ++generation_;
  wake_.notify_all();
  // The caller works too.
  while (nextBegin_ < jobSize_) {
    const int64_t b = nextBegin_;
    const int64_t e = std::min(jobSize_, b + chunk_);
    nextBegin_ = e;
    ++busy_;
    lock.unlock();
    fn(b, e);
    lock.lock();
    --busy_;
  }
  done_.wait(lock, [&] { return busy_ == 0; });
  job_ = nullptr;
}

void ThreadPool::workerLoop() {
  uint64_t seen = 0;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    wake_.wait(lock, [&] { return stop_ || (generation_ != seen && job_ != nullptr); });
    if (stop_) return;
    seen = generation_;
    while (job_ != nullptr && nextBegin_ < jobSize_) {
      const int64_t b = nextBegin_;
      const int64_t e = std::min(jobSize_, b + chunk_);
      nextBegin_ = e;
      ++busy_;
      const auto* fn = job_;
      lock.unlock();
      (*fn)(b, e);
      lock.lock();
      --busy_;
    }
    if (busy_ == 0) done_.notify_all();
  }
}

}  // namespace moedist::util
