#include <bpf/libbpf.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>

#include "addon.h"

namespace {
constexpr int kPollTimeoutMs = 100;  // bounds how long close() waits for the thread
// The queue between this thread and JavaScript is bounded in records: at most kMaxQueuedRecords wait for the JS
// thread (about 21 MB of eg_event records). When JavaScript falls that far behind, further records are dropped and
// counted (dropped()), so a flood never grows the agent's memory without bound and the ring buffer keeps draining.
constexpr uint64_t kMaxQueuedRecords = 65536;
constexpr size_t kMaxBatchRecords = 4096;
using Batch = std::vector<std::string>;
}  // namespace

Napi::Function RingBuffer::Init(Napi::Env env) {
  return DefineClass(env, "RingBuffer",
                     {InstanceMethod("close", &RingBuffer::Close), InstanceMethod("dropped", &RingBuffer::Dropped)});
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
  auto* self = static_cast<RingBuffer*>(ctx);
  self->pending_.emplace_back(static_cast<const char*>(data), size);
  if (self->pending_.size() >= kMaxBatchRecords && !self->Flush()) return -ECANCELED;
  return 0;
}

// Hand pending_ to JavaScript without waiting (or drop and count it when the queue is full); false when the
// function is closing (the reader must stop).
bool RingBuffer::Flush() {
  if (pending_.empty()) return true;
  const uint64_t count = pending_.size();
  if (queued_.load() + count > kMaxQueuedRecords) {
    dropped_.fetch_add(count);
    pending_.clear();
    return true;
  }
  auto* batch = new Batch(std::move(pending_));
  pending_.clear();
  queued_.fetch_add(count);
  napi_status status = deliver_.NonBlockingCall(batch, [this](Napi::Env env, Napi::Function callback, Batch* records) {
    queued_.fetch_sub(records->size());
    Napi::Array buffers = Napi::Array::New(env, records->size());
    for (size_t i = 0; i < records->size(); i++) {
      const std::string& record = (*records)[i];
      buffers.Set(i, Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(record.data()), record.size()));
    }
    delete records;
    callback.Call({buffers});
  });
  if (status == napi_ok) return true;
  queued_.fetch_sub(count);
  delete batch;
  return false;
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
    if (!Flush()) break;
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

// Records dropped because JavaScript was kMaxQueuedRecords records behind.
Napi::Value RingBuffer::Dropped(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(dropped_.load()));
}

Napi::Value RingBuffer::Close(const Napi::CallbackInfo& info) {
  bool wasRunning = running_;
  Stop();
  if (wasRunning) Unref();
  int err = pollError_.load();
  if (err) ThrowErrno(info.Env(), "ring_buffer__poll", err);
  return info.Env().Undefined();
}
