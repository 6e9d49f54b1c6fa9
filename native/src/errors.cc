#include <bpf/libbpf.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>

#include "addon.h"

namespace {
std::mutex logMutex;
std::deque<std::string> logLines;  // recent libbpf warnings (verifier logs end up here)
constexpr size_t kMaxLogLines = 80;

int CaptureLibbpfPrint(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char line[1024];
  int written = vsnprintf(line, sizeof(line), format, args);
  std::lock_guard<std::mutex> lock(logMutex);
  logLines.emplace_back(line);
  while (logLines.size() > kMaxLogLines) logLines.pop_front();
  return written;
}

std::string TakeLibbpfLog() {
  std::lock_guard<std::mutex> lock(logMutex);
  std::string joined;
  for (const auto& line : logLines) joined += line;
  logLines.clear();
  return joined;
}
}  // namespace

void InstallLibbpfLogCapture() { libbpf_set_print(CaptureLibbpfPrint); }

void ClearLibbpfLog() { TakeLibbpfLog(); }

void ThrowErrno(Napi::Env env, const std::string& call, int err, bool withLibbpfLog) {
  if (err < 0) err = -err;
  if (err == 0) err = EINVAL;
  const char* name = strerrorname_np(err);
  std::string message = call + ": " + strerror(err);
  if (withLibbpfLog) {
    std::string log = TakeLibbpfLog();
    if (!log.empty()) message += "\nlibbpf log:\n" + log;
  }
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, name != nullptr ? name : "EUNKNOWN"));
  error.Set("errno", Napi::Number::New(env, err));
  throw error;
}

std::string RequireString(const Napi::CallbackInfo& info, size_t index, const char* what) {
  if (info.Length() <= index || !info[index].IsString())
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a string");
  return info[index].As<Napi::String>().Utf8Value();
}

Napi::Buffer<uint8_t> RequireBuffer(const Napi::CallbackInfo& info, size_t index, const char* what) {
  if (info.Length() <= index || !info[index].IsBuffer())
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a Buffer");
  return info[index].As<Napi::Buffer<uint8_t>>();
}
