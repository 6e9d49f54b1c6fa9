// Thin node-addon-api bindings over libbpf. No policy logic lives here: only objects, programs,
// links, maps, the ring buffer and introspection, each throwing errors that name the libbpf call.
#pragma once

#include <napi.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

struct bpf_object;
struct bpf_program;
struct bpf_link;
struct ring_buffer;

// errors.cc
void InstallLibbpfLogCapture();
void ClearLibbpfLog();
// Throws a JS Error "<call>: <strerror>" with .code (e.g. 'EPERM') and .errno; err may be negative.
[[noreturn]] void ThrowErrno(Napi::Env env, const std::string& call, int err, bool withLibbpfLog = false);
std::string RequireString(const Napi::CallbackInfo& info, size_t index, const char* what);
Napi::Buffer<uint8_t> RequireBuffer(const Napi::CallbackInfo& info, size_t index, const char* what);
// sockets.cc
void RegisterSocketFunctions(Napi::Env env, Napi::Object exports);

class BpfObject : public Napi::ObjectWrap<BpfObject> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit BpfObject(const Napi::CallbackInfo& info);
  ~BpfObject() override;
  struct bpf_object* Handle(Napi::Env env) const;

 private:
  Napi::Value Load(const Napi::CallbackInfo& info);
  Napi::Value SetAutoload(const Napi::CallbackInfo& info);
  Napi::Value MapDefinitions(const Napi::CallbackInfo& info);
  Napi::Value Program(const Napi::CallbackInfo& info);
  Napi::Value Map(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  struct bpf_object* object_ = nullptr;
  std::string path_;
};

class BpfProgram : public Napi::ObjectWrap<BpfProgram> {
 public:
  static Napi::Function Init(Napi::Env env);
  static Napi::FunctionReference constructor;
  explicit BpfProgram(const Napi::CallbackInfo& info);
  // Valid while the owning object is open.
  struct bpf_program* Handle(Napi::Env env) const;

 private:
  Napi::Value AttachCgroup(const Napi::CallbackInfo& info);
  Napi::Value TestRun(const Napi::CallbackInfo& info);
  Napi::Value Iterate(const Napi::CallbackInfo& info);

  Napi::ObjectReference owner_;
  std::string name_;
};

class BpfLink : public Napi::ObjectWrap<BpfLink> {
 public:
  static Napi::Function Init(Napi::Env env);
  static Napi::FunctionReference constructor;
  static Napi::Object Wrap(Napi::Env env, struct bpf_link* link);
  explicit BpfLink(const Napi::CallbackInfo& info);
  ~BpfLink() override;

 private:
  struct bpf_link* Handle(Napi::Env env) const;
  Napi::Value Pin(const Napi::CallbackInfo& info);
  Napi::Value Update(const Napi::CallbackInfo& info);
  Napi::Value Detach(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  struct bpf_link* link_ = nullptr;
};

class BpfMap : public Napi::ObjectWrap<BpfMap> {
 public:
  static Napi::Function Init(Napi::Env env);
  static Napi::FunctionReference constructor;
  // Takes ownership of fd.
  static Napi::Object Wrap(Napi::Env env, int fd);
  explicit BpfMap(const Napi::CallbackInfo& info);
  ~BpfMap() override;
  int Fd(Napi::Env env) const;

 private:
  Napi::Value Lookup(const Napi::CallbackInfo& info);
  Napi::Value Update(const Napi::CallbackInfo& info);
  Napi::Value Delete(const Napi::CallbackInfo& info);
  Napi::Value UpdateBatch(const Napi::CallbackInfo& info);
  Napi::Value DeleteBatch(const Napi::CallbackInfo& info);
  uint32_t BatchCount(Napi::Env env, const Napi::Buffer<uint8_t>& keys) const;
  Napi::Value Keys(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  void CheckKey(Napi::Env env, const Napi::Buffer<uint8_t>& key) const;
  size_t LookupValueSize() const;

  int fd_ = -1;
  std::string name_;
  uint32_t type_ = 0;
  uint32_t keySize_ = 0;
  uint32_t valueSize_ = 0;
  uint32_t maxEntries_ = 0;
};

class RingBuffer : public Napi::ObjectWrap<RingBuffer> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit RingBuffer(const Napi::CallbackInfo& info);
  ~RingBuffer() override;

 private:
  static int OnSample(void* ctx, void* data, size_t size);
  bool Flush();
  void Poll();
  void Stop();
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Dropped(const Napi::CallbackInfo& info);

  struct ring_buffer* ring_ = nullptr;
  int mapFd_ = -1;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> pollError_{0};
  std::atomic<uint64_t> dropped_{0};
  std::atomic<uint64_t> queued_{0};  // records handed to JavaScript and not yet delivered
  std::vector<std::string> pending_;  // touched only by the polling thread
  Napi::ThreadSafeFunction deliver_;
  bool running_ = false;
};

// Moves the calling thread into a network namespace for its lifetime (empty path: stays put). tc.cc
class NetnsScope {
 public:
  NetnsScope(Napi::Env env, const std::string& path);
  ~NetnsScope();
  NetnsScope(const NetnsScope&) = delete;
  NetnsScope& operator=(const NetnsScope&) = delete;

 private:
  int original_ = -1;
};
// The optional network namespace path argument at index ("" when absent). tc.cc
std::string OptionalNetns(const Napi::CallbackInfo& info, size_t index);

// introspect.cc
Napi::Value ProbeFeatures(const Napi::CallbackInfo& info);
Napi::Value BtfLayout(const Napi::CallbackInfo& info);
Napi::Value BtfEnums(const Napi::CallbackInfo& info);

// tc.cc
Napi::Value IfNameToIndex(const Napi::CallbackInfo& info);
Napi::Value TcAttachIngress(const Napi::CallbackInfo& info);
Napi::Value TcDetachIngress(const Napi::CallbackInfo& info);
Napi::Value TcQueryIngress(const Napi::CallbackInfo& info);
Napi::Value TcAttachEgress(const Napi::CallbackInfo& info);
Napi::Value TcDetachEgress(const Napi::CallbackInfo& info);
Napi::Value TcQueryEgress(const Napi::CallbackInfo& info);
