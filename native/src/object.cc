#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "addon.h"

Napi::FunctionReference BpfProgram::constructor;
Napi::FunctionReference BpfLink::constructor;

// ---- BpfObject: new BpfObject(path, pinRoot?) ----

Napi::Function BpfObject::Init(Napi::Env env) {
  return DefineClass(env, "BpfObject",
                     {InstanceMethod("load", &BpfObject::Load),
                      InstanceMethod("setAutoload", &BpfObject::SetAutoload),
                      InstanceMethod("mapDefinitions", &BpfObject::MapDefinitions),
                      InstanceMethod("program", &BpfObject::Program),
                      InstanceMethod("map", &BpfObject::Map),
                      InstanceMethod("close", &BpfObject::Close)});
}

BpfObject::BpfObject(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BpfObject>(info) {
  path_ = RequireString(info, 0, "object path");
  std::string pinRoot;
  if (info.Length() > 1 && !info[1].IsUndefined() && !info[1].IsNull())
    pinRoot = RequireString(info, 1, "pin root");
  LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = pinRoot.empty() ? nullptr : pinRoot.c_str());
  ClearLibbpfLog();
  object_ = bpf_object__open_file(path_.c_str(), &opts);
  if (object_ == nullptr) {
    int err = errno;
    ThrowErrno(info.Env(), "bpf_object__open_file(" + path_ + ")", err, true);
  }
}

BpfObject::~BpfObject() {
  if (object_ != nullptr) bpf_object__close(object_);
}

struct bpf_object* BpfObject::Handle(Napi::Env env) const {
  if (object_ == nullptr) throw Napi::Error::New(env, "BPF object " + path_ + " is closed");
  return object_;
}

Napi::Value BpfObject::Load(const Napi::CallbackInfo& info) {
  ClearLibbpfLog();
  int err = bpf_object__load(Handle(info.Env()));
  if (err) ThrowErrno(info.Env(), "bpf_object__load(" + path_ + ")", err, true);
  return info.Env().Undefined();
}

// setAutoload(programName, autoload): before load(), whether load() loads the program at all.
Napi::Value BpfObject::SetAutoload(const Napi::CallbackInfo& info) {
  std::string name = RequireString(info, 0, "program name");
  if (info.Length() < 2 || !info[1].IsBoolean()) throw Napi::TypeError::New(info.Env(), "autoload must be a boolean");
  struct bpf_program* program = bpf_object__find_program_by_name(Handle(info.Env()), name.c_str());
  if (program == nullptr) ThrowErrno(info.Env(), "bpf_object__find_program_by_name(" + name + ")", ENOENT);
  int err = bpf_program__set_autoload(program, info[1].As<Napi::Boolean>().Value());
  if (err) ThrowErrno(info.Env(), "bpf_program__set_autoload(" + name + ")", err);
  return info.Env().Undefined();
}

// mapDefinitions() -> [{ name, type, keySize, valueSize, maxEntries, flags }] as the object declares them (no load needed).
Napi::Value BpfObject::MapDefinitions(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array definitions = Napi::Array::New(env);
  struct bpf_map* map;
  uint32_t index = 0;
  bpf_object__for_each_map(map, Handle(env)) {
    Napi::Object definition = Napi::Object::New(env);
    definition.Set("name", Napi::String::New(env, bpf_map__name(map)));
    definition.Set("type", Napi::Number::New(env, bpf_map__type(map)));
    definition.Set("keySize", Napi::Number::New(env, bpf_map__key_size(map)));
    definition.Set("valueSize", Napi::Number::New(env, bpf_map__value_size(map)));
    definition.Set("maxEntries", Napi::Number::New(env, bpf_map__max_entries(map)));
    definition.Set("flags", Napi::Number::New(env, bpf_map__map_flags(map)));
    definitions.Set(index++, definition);
  }
  return definitions;
}

Napi::Value BpfObject::Program(const Napi::CallbackInfo& info) {
  std::string name = RequireString(info, 0, "program name");
  if (bpf_object__find_program_by_name(Handle(info.Env()), name.c_str()) == nullptr)
    ThrowErrno(info.Env(), "bpf_object__find_program_by_name(" + name + ")", ENOENT);
  return BpfProgram::constructor.New({Value(), Napi::String::New(info.Env(), name)});
}

// The returned map owns a duplicate fd, so it stays usable after the object is closed.
Napi::Value BpfObject::Map(const Napi::CallbackInfo& info) {
  std::string name = RequireString(info, 0, "map name");
  struct bpf_map* map = bpf_object__find_map_by_name(Handle(info.Env()), name.c_str());
  if (map == nullptr) ThrowErrno(info.Env(), "bpf_object__find_map_by_name(" + name + ")", ENOENT);
  int fd = bpf_map__fd(map);
  if (fd < 0) ThrowErrno(info.Env(), "bpf_map__fd(" + name + ") (object not loaded?)", fd);
  int owned = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (owned < 0) ThrowErrno(info.Env(), "dup(" + name + ")", errno);
  return BpfMap::Wrap(info.Env(), owned);
}

Napi::Value BpfObject::Close(const Napi::CallbackInfo& info) {
  if (object_ != nullptr) bpf_object__close(object_);
  object_ = nullptr;
  return info.Env().Undefined();
}

// ---- BpfProgram: created by BpfObject.program(name) ----

Napi::Function BpfProgram::Init(Napi::Env env) {
  Napi::Function fn = DefineClass(env, "BpfProgram",
                                  {InstanceMethod("attachCgroup", &BpfProgram::AttachCgroup),
                                   InstanceMethod("testRun", &BpfProgram::TestRun),
                                   InstanceMethod("iterate", &BpfProgram::Iterate)});
  constructor = Napi::Persistent(fn);
  constructor.SuppressDestruct();
  return fn;
}

BpfProgram::BpfProgram(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BpfProgram>(info) {
  if (info.Length() < 2 || !info[0].IsObject())
    throw Napi::TypeError::New(info.Env(), "BpfProgram is created by BpfObject.program(name)");
  owner_ = Napi::Persistent(info[0].As<Napi::Object>());
  name_ = RequireString(info, 1, "program name");
}

struct bpf_program* BpfProgram::Handle(Napi::Env env) const {
  BpfObject* owner = BpfObject::Unwrap(owner_.Value());
  struct bpf_program* program = bpf_object__find_program_by_name(owner->Handle(env), name_.c_str());
  if (program == nullptr) ThrowErrno(env, "bpf_object__find_program_by_name(" + name_ + ")", ENOENT);
  return program;
}

Napi::Value BpfProgram::AttachCgroup(const Napi::CallbackInfo& info) {
  std::string path = RequireString(info, 0, "cgroup path");
  int cgroupFd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cgroupFd < 0) ThrowErrno(info.Env(), "open(" + path + ")", errno);
  ClearLibbpfLog();
  struct bpf_link* link = bpf_program__attach_cgroup(Handle(info.Env()), cgroupFd);
  int err = link == nullptr ? errno : 0;
  close(cgroupFd);
  if (link == nullptr) ThrowErrno(info.Env(), "bpf_program__attach_cgroup(" + name_ + ", " + path + ")", err, true);
  return BpfLink::Wrap(info.Env(), link);
}

// testRun({ data?, ctx?, dataOutSize?, ctxOutSize?, repeat? }) -> { retval, duration, data, ctx }
Napi::Value BpfProgram::TestRun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object options = info.Length() > 0 && info[0].IsObject() ? info[0].As<Napi::Object>() : Napi::Object::New(env);
  auto optionalBuffer = [&](const char* key) -> std::vector<uint8_t> {
    Napi::Value value = options.Get(key);
    if (value.IsUndefined() || value.IsNull()) return {};
    if (!value.IsBuffer()) throw Napi::TypeError::New(env, std::string("testRun option ") + key + " must be a Buffer");
    auto buffer = value.As<Napi::Buffer<uint8_t>>();
    return std::vector<uint8_t>(buffer.Data(), buffer.Data() + buffer.Length());
  };
  auto optionalNumber = [&](const char* key, uint32_t fallback) -> uint32_t {
    Napi::Value value = options.Get(key);
    return value.IsNumber() ? value.As<Napi::Number>().Uint32Value() : fallback;
  };
  std::vector<uint8_t> dataIn = optionalBuffer("data");
  std::vector<uint8_t> ctxIn = optionalBuffer("ctx");
  std::vector<uint8_t> dataOut(optionalNumber("dataOutSize", static_cast<uint32_t>(dataIn.size()) + 256));
  std::vector<uint8_t> ctxOut(optionalNumber("ctxOutSize", static_cast<uint32_t>(ctxIn.size())));
  LIBBPF_OPTS(bpf_test_run_opts, opts,
              .data_in = dataIn.empty() ? nullptr : dataIn.data(),
              .data_out = dataOut.empty() ? nullptr : dataOut.data(),
              .data_size_in = static_cast<uint32_t>(dataIn.size()),
              .data_size_out = static_cast<uint32_t>(dataOut.size()),
              .ctx_in = ctxIn.empty() ? nullptr : ctxIn.data(),
              .ctx_out = ctxOut.empty() ? nullptr : ctxOut.data(),
              .ctx_size_in = static_cast<uint32_t>(ctxIn.size()),
              .ctx_size_out = static_cast<uint32_t>(ctxOut.size()),
              .repeat = static_cast<int>(optionalNumber("repeat", 1)));
  int fd = bpf_program__fd(Handle(env));
  int err = bpf_prog_test_run_opts(fd, &opts);
  if (err) ThrowErrno(env, "bpf_prog_test_run_opts(" + name_ + ")", err);
  Napi::Object result = Napi::Object::New(env);
  result.Set("retval", Napi::Number::New(env, opts.retval));
  result.Set("duration", Napi::Number::New(env, opts.duration));
  result.Set("data", Napi::Buffer<uint8_t>::Copy(env, dataOut.data(), std::min<size_t>(opts.data_size_out, dataOut.size())));
  result.Set("ctx", Napi::Buffer<uint8_t>::Copy(env, ctxOut.data(), std::min<size_t>(opts.ctx_size_out, ctxOut.size())));
  return result;
}

// iterate(netnsPath?) -> string: attaches an iterator program (iter/tcp, iter/udp), runs one pass over
// what it walks and returns everything the program wrote; the link is gone afterwards. Socket
// iterators walk the network namespace the iterator is created in: netnsPath, or the caller's.
Napi::Value BpfProgram::Iterate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string netns = OptionalNetns(info, 0);
  ClearLibbpfLog();
  struct bpf_link* link = bpf_program__attach_iter(Handle(env), nullptr);
  if (link == nullptr) ThrowErrno(env, "bpf_program__attach_iter(" + name_ + ")", errno, true);
  int iterFd;
  try {
    NetnsScope scope(env, netns);
    iterFd = bpf_iter_create(bpf_link__fd(link));
  } catch (...) {
    bpf_link__destroy(link);
    throw;
  }
  if (iterFd < 0) {
    int err = errno;
    bpf_link__destroy(link);
    ThrowErrno(env, "bpf_iter_create(" + name_ + ")", err);
  }
  std::string output;
  char buffer[4096];
  ssize_t got;
  while ((got = read(iterFd, buffer, sizeof(buffer))) != 0) {
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      int err = errno;
      close(iterFd);
      bpf_link__destroy(link);
      ThrowErrno(env, "read(iterator " + name_ + ")", err);
    }
    output.append(buffer, static_cast<size_t>(got));
  }
  close(iterFd);
  bpf_link__destroy(link);
  return Napi::String::New(env, output);
}

// ---- BpfLink: from program.attachCgroup() or BpfLink.openPinned(path) ----

Napi::Function BpfLink::Init(Napi::Env env) {
  Napi::Function fn = DefineClass(
      env, "BpfLink",
      {StaticMethod("openPinned",
                    [](const Napi::CallbackInfo& info) -> Napi::Value {
                      std::string path = RequireString(info, 0, "link pin path");
                      struct bpf_link* link = bpf_link__open(path.c_str());
                      if (link == nullptr) ThrowErrno(info.Env(), "bpf_link__open(" + path + ")", errno);
                      return Wrap(info.Env(), link);
                    }),
       InstanceMethod("pin", &BpfLink::Pin),
       InstanceMethod("update", &BpfLink::Update), InstanceMethod("detach", &BpfLink::Detach),
       InstanceMethod("info", &BpfLink::Info), InstanceMethod("close", &BpfLink::Close)});
  constructor = Napi::Persistent(fn);
  constructor.SuppressDestruct();
  return fn;
}

Napi::Object BpfLink::Wrap(Napi::Env env, struct bpf_link* link) {
  return constructor.New({Napi::External<struct bpf_link>::New(env, link)});
}

BpfLink::BpfLink(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BpfLink>(info) {
  if (info.Length() < 1 || !info[0].IsExternal())
    throw Napi::TypeError::New(info.Env(), "BpfLink comes from program.attachCgroup() or BpfLink.openPinned()");
  link_ = info[0].As<Napi::External<struct bpf_link>>().Data();
}

// Closing an unpinned link detaches it; a pinned one keeps enforcing.
BpfLink::~BpfLink() {
  if (link_ != nullptr) bpf_link__destroy(link_);
}

struct bpf_link* BpfLink::Handle(Napi::Env env) const {
  if (link_ == nullptr) throw Napi::Error::New(env, "BPF link is closed");
  return link_;
}

Napi::Value BpfLink::Pin(const Napi::CallbackInfo& info) {
  std::string path = RequireString(info, 0, "link pin path");
  int err = bpf_link__pin(Handle(info.Env()), path.c_str());
  if (err) ThrowErrno(info.Env(), "bpf_link__pin(" + path + ")", err);
  return info.Env().Undefined();
}

Napi::Value BpfLink::Update(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsObject())
    throw Napi::TypeError::New(info.Env(), "link.update(program) needs a BpfProgram");
  BpfProgram* program = BpfProgram::Unwrap(info[0].As<Napi::Object>());
  int err = bpf_link__update_program(Handle(info.Env()), program->Handle(info.Env()));
  if (err) ThrowErrno(info.Env(), "bpf_link__update_program", err);
  return info.Env().Undefined();
}

Napi::Value BpfLink::Detach(const Napi::CallbackInfo& info) {
  int err = bpf_link__detach(Handle(info.Env()));
  if (err) ThrowErrno(info.Env(), "bpf_link__detach", err);
  return info.Env().Undefined();
}

// info() -> { id, progId, type, cgroupId: bigint, attachType }
Napi::Value BpfLink::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_link_info linkInfo;
  memset(&linkInfo, 0, sizeof(linkInfo));
  uint32_t length = sizeof(linkInfo);
  int err = bpf_obj_get_info_by_fd(bpf_link__fd(Handle(env)), &linkInfo, &length);
  if (err) ThrowErrno(env, "bpf_obj_get_info_by_fd(link)", err);
  Napi::Object result = Napi::Object::New(env);
  result.Set("id", Napi::Number::New(env, linkInfo.id));
  result.Set("progId", Napi::Number::New(env, linkInfo.prog_id));
  result.Set("type", Napi::Number::New(env, linkInfo.type));
  bool isCgroup = linkInfo.type == BPF_LINK_TYPE_CGROUP;
  result.Set("cgroupId", Napi::BigInt::New(env, static_cast<uint64_t>(isCgroup ? linkInfo.cgroup.cgroup_id : 0)));
  result.Set("attachType", Napi::Number::New(env, isCgroup ? linkInfo.cgroup.attach_type : 0));
  return result;
}

Napi::Value BpfLink::Close(const Napi::CallbackInfo& info) {
  if (link_ != nullptr) bpf_link__destroy(link_);
  link_ = nullptr;
  return info.Env().Undefined();
}
