#include "bench/kernel_trace.h"

#include <cxxabi.h>
#include <cupti_activity.h>
#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>

namespace loom::bench {
namespace {

// The CUPTI entry points used, looked up in libcupti at run time.
struct Cupti {
  CUptiResult (*register_callbacks)(CUpti_BuffersCallbackRequestFunc, CUpti_BuffersCallbackCompleteFunc);
  CUptiResult (*enable)(CUpti_ActivityKind);
  CUptiResult (*disable)(CUpti_ActivityKind);
  CUptiResult (*flush_all)(uint32_t);
  CUptiResult (*next_record)(uint8_t*, size_t, CUpti_Activity**);
};

const Cupti* load(std::string* why) {
  static Cupti api;
  static std::string error = [] {
    void* lib = nullptr;
    for (const char* name : {"libcupti.so.13", "libcupti.so"})
      if ((lib = dlopen(name, RTLD_NOW | RTLD_LOCAL))) break;
    if (!lib) return std::string("libcupti.so.13 not found (add CUDA's extras/CUPTI/lib64 to LD_LIBRARY_PATH)");
    auto sym = [&](const char* s) { return dlsym(lib, s); };
    api.register_callbacks = reinterpret_cast<decltype(api.register_callbacks)>(sym("cuptiActivityRegisterCallbacks"));
    api.enable = reinterpret_cast<decltype(api.enable)>(sym("cuptiActivityEnable"));
    api.disable = reinterpret_cast<decltype(api.disable)>(sym("cuptiActivityDisable"));
    api.flush_all = reinterpret_cast<decltype(api.flush_all)>(sym("cuptiActivityFlushAll"));
    api.next_record = reinterpret_cast<decltype(api.next_record)>(sym("cuptiActivityGetNextRecord"));
    if (!api.register_callbacks || !api.enable || !api.disable || !api.flush_all || !api.next_record)
      return std::string("libcupti lacks the activity API");
    return std::string();
  }();
  if (!error.empty()) {
    if (why) *why = error;
    return nullptr;
  }
  return &api;
}

std::mutex mu;
std::map<std::string, KernelTime> totals;  // by kernel name

std::string demangled(const char* name) {
  int status = 0;
  char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  std::string out = status == 0 && d ? d : name;
  std::free(d);
  return out;
}

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  constexpr size_t kBytes = size_t(8) << 20;
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, kBytes));
  *size = kBytes;
  *max_records = 0;  // as many as fit
}

void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
  const Cupti* api = load(nullptr);
  CUpti_Activity* record = nullptr;
  std::lock_guard<std::mutex> lock(mu);
  while (api && api->next_record(buffer, valid, &record) == CUPTI_SUCCESS) {
    if (record->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL && record->kind != CUPTI_ACTIVITY_KIND_KERNEL)
      continue;
    const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(record);
    KernelTime& t = totals[k->name ? k->name : "?"];
    ++t.calls;
    t.total_ms += double(k->end - k->start) * 1e-6;
  }
  std::free(buffer);
}

}  // namespace

bool kernel_trace_start(std::string* why) {
  const Cupti* api = load(why);
  if (!api) return false;
  if (api->register_callbacks(buffer_requested, buffer_completed) != CUPTI_SUCCESS ||
      api->enable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) != CUPTI_SUCCESS) {
    *why = "CUPTI refused to record kernel activity";
    return false;
  }
  std::lock_guard<std::mutex> lock(mu);
  totals.clear();
  return true;
}

std::vector<KernelTime> kernel_trace_stop() {
  std::string ignored;
  const Cupti* api = load(&ignored);
  if (!api) return {};
  api->flush_all(1);  // CUPTI_ACTIVITY_FLAG_FLUSH_FORCED
  api->disable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
  std::vector<KernelTime> out;
  {
    std::lock_guard<std::mutex> lock(mu);
    for (auto& [name, t] : totals) {
      out.push_back(t);
      out.back().name = demangled(name.c_str());
    }
  }
  std::sort(out.begin(), out.end(), [](const KernelTime& a, const KernelTime& b) {
    return a.total_ms > b.total_ms;
  });
  return out;
}

}  // namespace loom::bench
