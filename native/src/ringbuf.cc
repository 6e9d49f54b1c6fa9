#include <bpf/libbpf.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>

#include "addon.h"

namespace {
constexpr int kPollTimeoutMs = 100;  // bounds how long close() waits for the thread
using Batch = std::vector<std::string>;
}  // namespace

Napi::Function RingBuffer::Init(Napi::Env env) {
  return DefineClass(env, "RingBuffer", {InstanceMethod("close", &RingBuffer::Close)});
}

// new RingBuffer(map, (records: Buffer[] | null, error?: Error) => void); records arrive in batches
RingBuffer::RingBuffer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RingBuffer>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsFunction())
    throw Napi::TypeError::New(env, "new RingBuffer(map, onRecords) needs a BpfMap and a function");
  int fd = BpfMap::Unwrap(info[0].As<Napi::Object>())->Fd(env);
  mapFd_ = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (mapFd_ < 0) ThrowErrno(env, "dup(ring buffer map)", errno);
  ring_ = ring_buffer__new(mapFd_, OnSample, this, nullptr);
  if (ring_ == nullptr) {
    int err = errno;
    close(mapFd_);
    mapFd_ = -1;
    ThrowErrno(env, "ring_buffer__new", err, true);
  }
  deliver_ = Napi::ThreadSafeFunction::New(env, info[1].As<Napi::Function>(), "egressguard-ringbuf", 0, 1);
  running_ = true;
  Ref();  // a running reader must not be garbage collected
  thread_ = std::thread([this] { Poll(); });
}

RingBuffer::~RingBuffer() { Stop(); }

int RingBuffer::OnSample(void* ctx, void* data, size_t size) {
  static_cast<RingBuffer*>(ctx)->pending_.emplace_back(static_cast<const char*>(data), size);
  return 0;
}

void RingBuffer::Poll() {
  while (!stopping_.load()) {
    int polled = ring_buffer__poll(ring_, kPollTimeoutMs);
    if (polled < 0 && polled != -EINTR) {
      pollError_.store(-polled);
      // Tell JS now rather than at close(): an empty batch pointer carries the error.
      deliver_.BlockingCall(static_cast<Batch*>(nullptr), [this](Napi::Env env, Napi::Function callback, Batch*) {
        Napi::Error error = Napi::Error::New(env, std::string("ring_buffer__poll: ") + strerror(pollError_.load()));
        callback.Call({env.Null(), error.Value()});
      });
      break;
    }
    if (pending_.empty()) continue;
    auto* batch = new Batch(std::move(pending_));
    pending_.clear();
    napi_status status = deliver_.BlockingCall(batch, [](Napi::Env env, Napi::Function callback, Batch* records) {
      Napi::Array buffers = Napi::Array::New(env, records->size());
      for (size_t i = 0; i < records->size(); i++) {
        const std::string& record = (*records)[i];
        buffers.Set(i, Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(record.data()), record.size()));
      }
      delete records;
      callback.Call({buffers});
    });
    if (status != napi_ok) {
      delete batch;
      break;
    }
  }
}

void RingBuffer::Stop() {
  if (!running_) return;
  running_ = false;
  stopping_.store(true);
  if (thread_.joinable()) thread_.join();
  deliver_.Release();
  ring_buffer__free(ring_);
  ring_ = nullptr;
  close(mapFd_);
  mapFd_ = -1;
}

Napi::Value RingBuffer::Close(const Napi::CallbackInfo& info) {
  bool wasRunning = running_;
  Stop();
  if (wasRunning) Unref();
  int err = pollError_.load();
  if (err) ThrowErrno(info.Env(), "ring_buffer__poll", err);
  return info.Env().Undefined();
}
