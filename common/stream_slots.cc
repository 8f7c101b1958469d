#include "common/stream_slots.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace dangjian {

StreamSlots::Slot::Slot(Slot&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)), caller_(std::move(other.caller_)) {}

StreamSlots::Slot& StreamSlots::Slot::operator=(Slot&& other) noexcept {
  if (this != &other) {
    if (owner_ != nullptr) owner_->Release(caller_);
    owner_ = std::exchange(other.owner_, nullptr);
    caller_ = std::move(other.caller_);
  }
  return *this;
}

StreamSlots::Slot::~Slot() {
  if (owner_ != nullptr) owner_->Release(caller_);
}

StreamSlots::StreamSlots(StreamLimits limits, std::string what, prometheus::Gauge* open,
                         prometheus::Family<prometheus::Counter>* refused)
    : limits_(limits),
      what_(std::move(what)),
      open_gauge_(open),
      refused_process_(refused != nullptr ? &refused->Add({{"limit", "process"}}) : nullptr),
      refused_caller_(refused != nullptr ? &refused->Add({{"limit", "caller"}}) : nullptr) {}

StreamSlots::~StreamSlots() {
  absl::MutexLock lock(&mu_);
  if (open_ != 0) log::Error("stream slots destroyed with streams open", {{"open", open_}});
}

absl::StatusOr<StreamSlots::Slot> StreamSlots::Acquire(absl::string_view caller) {
  absl::MutexLock lock(&mu_);
  if (open_ >= limits_.max_open) {
    if (refused_process_ != nullptr) refused_process_->Increment();
    return absl::ResourceExhaustedError(
        absl::StrCat("this server already has ", open_, " ", what_, " open, its limit is ",
                     limits_.max_open, "; retry with backoff (another replica may have room)"));
  }
  auto it = per_caller_.find(caller);
  const int held = it == per_caller_.end() ? 0 : it->second;
  if (held >= limits_.max_per_caller) {
    if (refused_caller_ != nullptr) refused_caller_->Increment();
    return absl::ResourceExhaustedError(
        absl::StrCat("caller ", caller, " already has ", held, " ", what_,
                     " open on this server, the limit per caller is ", limits_.max_per_caller,
                     "; close one, or follow the feed with fewer streams"));
  }
  if (it == per_caller_.end()) it = per_caller_.emplace(std::string(caller), 0).first;
  ++it->second;
  ++open_;
  if (open_gauge_ != nullptr) open_gauge_->Set(open_);
  return Slot(this, std::string(caller));
}

void StreamSlots::Release(const std::string& caller) {
  absl::MutexLock lock(&mu_);
  auto it = per_caller_.find(caller);
  if (it != per_caller_.end() && --it->second <= 0) per_caller_.erase(it);
  --open_;
  ++released_;
  if (open_gauge_ != nullptr) open_gauge_->Set(open_);
}

int StreamSlots::open() const {
  absl::MutexLock lock(&mu_);
  return open_;
}

uint64_t StreamSlots::released() const {
  absl::MutexLock lock(&mu_);
  return released_;
}

int StreamSlots::open_for(absl::string_view caller) const {
  absl::MutexLock lock(&mu_);
  auto it = per_caller_.find(caller);
  return it == per_caller_.end() ? 0 : it->second;
}

}  // namespace dangjian
