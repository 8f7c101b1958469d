// Admission for long-lived streams (change feeds): at most `max_open` streams open at once in this
// process and at most `max_per_caller` for one caller (the token's subject), so that no reader,
// however narrow its scope, can make a replica hold memory without bound. A slot is held from
// Acquire() until its Slot is destroyed (for a gRPC reactor: in OnDone). With metrics it keeps a
// gauge of open streams and counts refusals by limit ("process" or "caller").
// Thread-safe.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>

#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace dangjian {

struct StreamLimits {
  int max_open = 1000;      // streams open at once in this process
  int max_per_caller = 16;  // streams open at once for one caller
};

class StreamSlots {
 public:
  // A held slot; move-only, freed on destruction.
  class Slot {
   public:
    Slot(Slot&& other) noexcept;
    Slot& operator=(Slot&& other) noexcept;
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    ~Slot();

   private:
    friend class StreamSlots;
    Slot(StreamSlots* owner, std::string caller) : owner_(owner), caller_(std::move(caller)) {}
    StreamSlots* owner_;  // null once moved from
    std::string caller_;
  };

  // `what` names the streams in refusals (e.g. "WatchOrgChanges streams"). The metrics, when
  // given, must outlive this object: `open` is set to the open count, `refused` gets one series
  // per limit, {limit="process"} and {limit="caller"}, present at 0 from construction.
  StreamSlots(StreamLimits limits, std::string what, prometheus::Gauge* open = nullptr,
              prometheus::Family<prometheus::Counter>* refused = nullptr);
  // Every Slot must be destroyed before its StreamSlots.
  ~StreamSlots();

  // A slot for `caller`, or RESOURCE_EXHAUSTED whose message states the limit reached.
  absl::StatusOr<Slot> Acquire(absl::string_view caller);

  int open() const;
  int open_for(absl::string_view caller) const;
  // Slots freed since construction (lets a caller notice that streams have ended).
  uint64_t released() const;
  const StreamLimits& limits() const { return limits_; }

 private:
  void Release(const std::string& caller);

  const StreamLimits limits_;
  const std::string what_;
  prometheus::Gauge* const open_gauge_;
  prometheus::Counter* const refused_process_;
  prometheus::Counter* const refused_caller_;
  mutable absl::Mutex mu_;
  int open_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t released_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, int> per_caller_ ABSL_GUARDED_BY(mu_);
};

}  // namespace dangjian
