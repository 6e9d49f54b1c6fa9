#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "addon.h"

Napi::FunctionReference BpfMap::constructor;

namespace {
bool IsPerCpu(uint32_t type) {
  return type == BPF_MAP_TYPE_PERCPU_ARRAY || type == BPF_MAP_TYPE_PERCPU_HASH ||
         type == BPF_MAP_TYPE_LRU_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE;
}
}  // namespace

Napi::Function BpfMap::Init(Napi::Env env) {
  Napi::Function fn = DefineClass(
      env, "BpfMap",
      {StaticMethod("openPinned",
                    [](const Napi::CallbackInfo& info) -> Napi::Value {
                      std::string path = RequireString(info, 0, "map pin path");
                      int fd = bpf_obj_get(path.c_str());
                      if (fd < 0) ThrowErrno(info.Env(), "bpf_obj_get(" + path + ")", errno);
                      return Wrap(info.Env(), fd);
                    }),
       InstanceMethod("lookup", &BpfMap::Lookup),
       InstanceMethod("update", &BpfMap::Update), InstanceMethod("delete", &BpfMap::Delete),
       InstanceMethod("updateBatch", &BpfMap::UpdateBatch), InstanceMethod("deleteBatch", &BpfMap::DeleteBatch),
       InstanceMethod("keys", &BpfMap::Keys),
       InstanceMethod("close", &BpfMap::Close)});
  constructor = Napi::Persistent(fn);
  constructor.SuppressDestruct();
  return fn;
}

Napi::Object BpfMap::Wrap(Napi::Env env, int fd) {
  Napi::Object map;
  try {
    map = constructor.New({Napi::Number::New(env, fd)});
  } catch (...) {
    close(fd);
    throw;
  }
  return map;
}

BpfMap::BpfMap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BpfMap>(info) {
  if (info.Length() < 1 || !info[0].IsNumber())
    throw Napi::TypeError::New(info.Env(), "BpfMap comes from BpfObject.map() or BpfMap.openPinned()");
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct bpf_map_info mapInfo;
  memset(&mapInfo, 0, sizeof(mapInfo));
  uint32_t length = sizeof(mapInfo);
  int err = bpf_obj_get_info_by_fd(fd, &mapInfo, &length);
  if (err) ThrowErrno(info.Env(), "bpf_obj_get_info_by_fd(map)", err);
  fd_ = fd;
  name_ = mapInfo.name;
  type_ = mapInfo.type;
  keySize_ = mapInfo.key_size;
  valueSize_ = mapInfo.value_size;
  maxEntries_ = mapInfo.max_entries;
}

BpfMap::~BpfMap() {
  if (fd_ >= 0) close(fd_);
}

int BpfMap::Fd(Napi::Env env) const {
  if (fd_ < 0) throw Napi::Error::New(env, "BPF map " + name_ + " is closed");
  return fd_;
}

// Per-CPU maps return one 8-byte-aligned value slot per possible CPU.
size_t BpfMap::LookupValueSize() const {
  if (!IsPerCpu(type_)) return valueSize_;
  return ((valueSize_ + 7) / 8 * 8) * static_cast<size_t>(libbpf_num_possible_cpus());
}

void BpfMap::CheckKey(Napi::Env env, const Napi::Buffer<uint8_t>& key) const {
  if (key.Length() != keySize_)
    throw Napi::RangeError::New(env, "key for map " + name_ + " must be " + std::to_string(keySize_) +
                                         " bytes, got " + std::to_string(key.Length()));
}

// lookup(key) -> Buffer | null
Napi::Value BpfMap::Lookup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto key = RequireBuffer(info, 0, "key");
  CheckKey(env, key);
  auto value = Napi::Buffer<uint8_t>::New(env, LookupValueSize());
  if (bpf_map_lookup_elem(Fd(env), key.Data(), value.Data()) != 0) {
    if (errno == ENOENT) return env.Null();
    ThrowErrno(env, "bpf_map_lookup_elem(" + name_ + ")", errno);
  }
  return value;
}

// update(key, value, flags = BPF_ANY)
Napi::Value BpfMap::Update(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto key = RequireBuffer(info, 0, "key");
  auto value = RequireBuffer(info, 1, "value");
  CheckKey(env, key);
  if (value.Length() != LookupValueSize())
    throw Napi::RangeError::New(env, "value for map " + name_ + " must be " + std::to_string(LookupValueSize()) +
                                         " bytes, got " + std::to_string(value.Length()));
  uint64_t flags = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().Uint32Value() : static_cast<uint32_t>(BPF_ANY);
  if (bpf_map_update_elem(Fd(env), key.Data(), value.Data(), flags) != 0)
    ThrowErrno(env, "bpf_map_update_elem(" + name_ + ")", errno);
  return env.Undefined();
}

// delete(key) -> true when an entry was removed
Napi::Value BpfMap::Delete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto key = RequireBuffer(info, 0, "key");
  CheckKey(env, key);
  if (bpf_map_delete_elem(Fd(env), key.Data()) != 0) {
    if (errno == ENOENT) return Napi::Boolean::New(env, false);
    ThrowErrno(env, "bpf_map_delete_elem(" + name_ + ")", errno);
  }
  return Napi::Boolean::New(env, true);
}

// Entries in a batch of concatenated keys; at least one.
uint32_t BpfMap::BatchCount(Napi::Env env, const Napi::Buffer<uint8_t>& keys) const {
  if (keys.Length() == 0 || keys.Length() % keySize_ != 0)
    throw Napi::RangeError::New(env, "keys for map " + name_ + " must be a non-empty multiple of " +
                                         std::to_string(keySize_) + " bytes, got " + std::to_string(keys.Length()));
  return static_cast<uint32_t>(keys.Length() / keySize_);
}

// updateBatch(keys, values): keys and values concatenated, entry i at i * size (BPF_MAP_UPDATE_BATCH, BPF_ANY)
Napi::Value BpfMap::UpdateBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto keys = RequireBuffer(info, 0, "keys");
  auto values = RequireBuffer(info, 1, "values");
  uint32_t count = BatchCount(env, keys);
  if (values.Length() != count * LookupValueSize())
    throw Napi::RangeError::New(env, "values for map " + name_ + " must be " + std::to_string(count) + " x " +
                                         std::to_string(LookupValueSize()) + " bytes, got " + std::to_string(values.Length()));
  uint32_t done = count;
  if (bpf_map_update_batch(Fd(env), keys.Data(), values.Data(), &done, nullptr) != 0) {
    int err = errno;
    ThrowErrno(env, "bpf_map_update_batch(" + name_ + ", " + std::to_string(done) + " of " + std::to_string(count) + " written)", err);
  }
  return env.Undefined();
}

// deleteBatch(keys): every key must be present (BPF_MAP_DELETE_BATCH stops at the first missing one: ENOENT)
Napi::Value BpfMap::DeleteBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto keys = RequireBuffer(info, 0, "keys");
  uint32_t count = BatchCount(env, keys);
  uint32_t done = count;
  if (bpf_map_delete_batch(Fd(env), keys.Data(), &done, nullptr) != 0) {
    int err = errno;
    ThrowErrno(env, "bpf_map_delete_batch(" + name_ + ", " + std::to_string(done) + " of " + std::to_string(count) + " deleted)", err);
  }
  return env.Undefined();
}

// keys() -> Buffer[] (a snapshot; concurrent deletes may make iteration restart at the start)
Napi::Value BpfMap::Keys(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array keys = Napi::Array::New(env);
  std::vector<uint8_t> current(keySize_), next(keySize_);
  const void* previous = nullptr;
  uint32_t index = 0;
  for (;;) {
    if (bpf_map_get_next_key(Fd(env), previous, next.data()) != 0) {
      if (errno == ENOENT) break;
      ThrowErrno(env, "bpf_map_get_next_key(" + name_ + ")", errno);
    }
    keys.Set(index++, Napi::Buffer<uint8_t>::Copy(env, next.data(), next.size()));
    if (index > maxEntries_) break;  // a racing writer cannot make this loop forever
    current.swap(next);
    previous = current.data();
  }
  return keys;
}

Napi::Value BpfMap::Close(const Napi::CallbackInfo& info) {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  return info.Env().Undefined();
}
