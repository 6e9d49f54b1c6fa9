// tc (clsact) attachment of sched_cls programs by ifindex, optionally inside another network
// namespace, and interface name lookup. libbpf 1.1 has no tcx links: a tc filter with a fixed
// handle and priority is replaced in place, so a restarted agent swaps its program atomically.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "addon.h"

NetnsScope::NetnsScope(Napi::Env env, const std::string& path) {
  if (path.empty()) return;
  original_ = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (original_ < 0) ThrowErrno(env, "open(/proc/thread-self/ns/net)", errno);
  int target = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    int err = errno;
    close(original_);
    ThrowErrno(env, "open(" + path + ")", err);
  }
  int rc = setns(target, CLONE_NEWNET);
  int err = errno;
  close(target);
  if (rc != 0) {
    close(original_);
    ThrowErrno(env, "setns(" + path + ")", err);
  }
}

NetnsScope::~NetnsScope() {
  if (original_ < 0) return;
  setns(original_, CLONE_NEWNET);  // back to where the thread was; cannot fail for our own namespace
  close(original_);
}

std::string OptionalNetns(const Napi::CallbackInfo& info, size_t index) {
  if (info.Length() <= index || info[index].IsUndefined() || info[index].IsNull()) return "";
  return RequireString(info, index, "network namespace path");
}

namespace {

uint32_t RequireUint(const Napi::CallbackInfo& info, size_t index, const char* what) {
  if (info.Length() <= index || !info[index].IsNumber())
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a number");
  return info[index].As<Napi::Number>().Uint32Value();
}

struct TcTarget {
  uint32_t ifindex;
  uint32_t handle;
  uint32_t priority;
};

TcTarget RequireTarget(const Napi::CallbackInfo& info, size_t first) {
  return {RequireUint(info, first, "ifindex"), RequireUint(info, first + 1, "tc handle"),
          RequireUint(info, first + 2, "tc priority")};
}

std::string Describe(const TcTarget& target, bpf_tc_attach_point point) {
  return "ifindex " + std::to_string(target.ifindex) + (point == BPF_TC_EGRESS ? " egress" : " ingress") +
         " handle " + std::to_string(target.handle) + " priority " + std::to_string(target.priority);
}

// (program, ifindex, handle, priority, netnsPath?): creates clsact if needed and attaches (or
// replaces) the direct-action filter at point.
Napi::Value TcAttach(const Napi::CallbackInfo& info, bpf_tc_attach_point point) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "tc attach needs a BpfProgram");
  int progFd = bpf_program__fd(BpfProgram::Unwrap(info[0].As<Napi::Object>())->Handle(env));
  if (progFd < 0) ThrowErrno(env, "bpf_program__fd (object not loaded?)", progFd);
  TcTarget target = RequireTarget(info, 1);
  NetnsScope scope(env, OptionalNetns(info, 4));
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(target.ifindex), .attach_point = point);
  int err = bpf_tc_hook_create(&hook);
  if (err && err != -EEXIST) ThrowErrno(env, "bpf_tc_hook_create(" + Describe(target, point) + ")", err, true);
  LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = progFd, .flags = BPF_TC_F_REPLACE, .handle = target.handle,
              .priority = target.priority);
  err = bpf_tc_attach(&hook, &opts);
  if (err) ThrowErrno(env, "bpf_tc_attach(" + Describe(target, point) + ")", err, true);
  return Napi::Number::New(env, opts.prog_id);
}

// (ifindex, handle, priority, netnsPath?) -> true when a filter was removed
Napi::Value TcDetach(const Napi::CallbackInfo& info, bpf_tc_attach_point point) {
  Napi::Env env = info.Env();
  TcTarget target = RequireTarget(info, 0);
  NetnsScope scope(env, OptionalNetns(info, 3));
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(target.ifindex), .attach_point = point);
  LIBBPF_OPTS(bpf_tc_opts, opts, .handle = target.handle, .priority = target.priority);
  int err = bpf_tc_detach(&hook, &opts);
  if (err == -ENOENT || err == -ENODEV || err == -EINVAL) return Napi::Boolean::New(env, false);
  if (err) ThrowErrno(env, "bpf_tc_detach(" + Describe(target, point) + ")", err, true);
  return Napi::Boolean::New(env, true);
}

// (ifindex, handle, priority, netnsPath?) -> attached program id or null
Napi::Value TcQuery(const Napi::CallbackInfo& info, bpf_tc_attach_point point) {
  Napi::Env env = info.Env();
  TcTarget target = RequireTarget(info, 0);
  NetnsScope scope(env, OptionalNetns(info, 3));
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(target.ifindex), .attach_point = point);
  LIBBPF_OPTS(bpf_tc_opts, opts, .handle = target.handle, .priority = target.priority);
  int err = bpf_tc_query(&hook, &opts);
  if (err == -ENOENT || err == -EINVAL || err == -ENODEV) return env.Null();
  if (err) ThrowErrno(env, "bpf_tc_query(" + Describe(target, point) + ")", err, true);
  return Napi::Number::New(env, opts.prog_id);
}

}  // namespace

// ifNameToIndex(name, netnsPath?) -> ifindex
Napi::Value IfNameToIndex(const Napi::CallbackInfo& info) {
  std::string name = RequireString(info, 0, "interface name");
  NetnsScope scope(info.Env(), OptionalNetns(info, 1));
  unsigned int index = if_nametoindex(name.c_str());
  if (index == 0) ThrowErrno(info.Env(), "if_nametoindex(" + name + ")", errno);
  return Napi::Number::New(info.Env(), index);
}

// tcAttach{Ingress,Egress}(program, ifindex, handle, priority, netnsPath?) -> program id
Napi::Value TcAttachIngress(const Napi::CallbackInfo& info) { return TcAttach(info, BPF_TC_INGRESS); }
Napi::Value TcAttachEgress(const Napi::CallbackInfo& info) { return TcAttach(info, BPF_TC_EGRESS); }

// tcDetach{Ingress,Egress}(ifindex, handle, priority, netnsPath?) -> true when a filter was removed
Napi::Value TcDetachIngress(const Napi::CallbackInfo& info) { return TcDetach(info, BPF_TC_INGRESS); }
Napi::Value TcDetachEgress(const Napi::CallbackInfo& info) { return TcDetach(info, BPF_TC_EGRESS); }

// tcQuery{Ingress,Egress}(ifindex, handle, priority, netnsPath?) -> attached program id or null
Napi::Value TcQueryIngress(const Napi::CallbackInfo& info) { return TcQuery(info, BPF_TC_INGRESS); }
Napi::Value TcQueryEgress(const Napi::CallbackInfo& info) { return TcQuery(info, BPF_TC_EGRESS); }
