#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <string>

#include "addon.h"

namespace {
// Whether the kernel lets a socket iterator end the sockets it visits, as bpf/lib/reap.h does: loads an iter/tcp
// program that calls the bpf_sock_destroy kfunc (Linux 6.5) on its socket. 1 when the verifier takes it, 0 when the
// kernel lacks BTF, the iterator or the kfunc, -errno when the kernel refused to try (no privilege).
int ProbeSocketDestroy() {
  struct btf* vmlinux = btf__load_vmlinux_btf();
  if (vmlinux == nullptr) return 0;  // no kernel BTF: no kfuncs and no iterators either
  int kfunc = btf__find_by_name_kind(vmlinux, "bpf_sock_destroy", BTF_KIND_FUNC);
  int iterator = btf__find_by_name_kind(vmlinux, "bpf_iter_tcp", BTF_KIND_FUNC);
  btf__free(vmlinux);
  if (kfunc < 0 || iterator < 0) return 0;
  // r1 = ctx->sk_common (the iterator context's second pointer); if r1 != 0: bpf_sock_destroy(r1); return 0
  const struct bpf_insn program[] = {
      {BPF_LDX | BPF_MEM | BPF_DW, BPF_REG_1, BPF_REG_1, 8, 0},
      {BPF_JMP | BPF_JEQ | BPF_K, BPF_REG_1, 0, 1, 0},
      {BPF_JMP | BPF_CALL, 0, BPF_PSEUDO_KFUNC_CALL, 0, kfunc},
      {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0},
      {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
  };
  LIBBPF_OPTS(bpf_prog_load_opts, options, .expected_attach_type = BPF_TRACE_ITER,
              .attach_btf_id = static_cast<__u32>(iterator));
  int fd = bpf_prog_load(BPF_PROG_TYPE_TRACING, "eg_probe_destroy", "GPL", program,
                         sizeof(program) / sizeof(program[0]), &options);
  if (fd >= 0) {
    close(fd);
    return 1;
  }
  return errno == EPERM ? -EPERM : 0;
}
}  // namespace

// probeFeatures() -> { [feature]: boolean } for what the datapath needs from the kernel.
Napi::Value ProbeFeatures(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object result = Napi::Object::New(env);
  auto record = [&](const char* name, const char* call, int probed) {
    if (probed < 0) ThrowErrno(env, std::string(call) + "(" + name + ")", probed);
    result.Set(name, Napi::Boolean::New(env, probed == 1));
  };
  record("cgroupSockAddrProgram", "libbpf_probe_bpf_prog_type",
         libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, nullptr));
  record("hashMap", "libbpf_probe_bpf_map_type", libbpf_probe_bpf_map_type(BPF_MAP_TYPE_HASH, nullptr));
  record("lpmTrieMap", "libbpf_probe_bpf_map_type", libbpf_probe_bpf_map_type(BPF_MAP_TYPE_LPM_TRIE, nullptr));
  record("ringBufferMap", "libbpf_probe_bpf_map_type", libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, nullptr));
  record("socketStorageMap", "libbpf_probe_bpf_map_type", libbpf_probe_bpf_map_type(BPF_MAP_TYPE_SK_STORAGE, nullptr));
  record("perCpuArrayMap", "libbpf_probe_bpf_map_type", libbpf_probe_bpf_map_type(BPF_MAP_TYPE_PERCPU_ARRAY, nullptr));
  record("ancestorCgroupIdHelper", "libbpf_probe_bpf_helper",
         libbpf_probe_bpf_helper(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_FUNC_get_current_ancestor_cgroup_id, nullptr));
  record("socketStorageHelper", "libbpf_probe_bpf_helper",
         libbpf_probe_bpf_helper(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_FUNC_sk_storage_get, nullptr));
  record("cgroupSkbProgram", "libbpf_probe_bpf_prog_type", libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_CGROUP_SKB, nullptr));
  record("schedClsProgram", "libbpf_probe_bpf_prog_type", libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_SCHED_CLS, nullptr));
  record("loopHelper", "libbpf_probe_bpf_helper", libbpf_probe_bpf_helper(BPF_PROG_TYPE_CGROUP_SKB, BPF_FUNC_loop, nullptr));
  record("socketDestroy", "bpf_prog_load", ProbeSocketDestroy());
  return result;
}

// The walk btfLayout and btfEnums share: parse the object's BTF, find each named type of `kind`, and map it through
// describe(btf, type).
template <typename Describe>
Napi::Value DescribeBtfTypes(const Napi::CallbackInfo& info, uint32_t kind, const std::string& kindName, Describe describe) {
  Napi::Env env = info.Env();
  std::string path = RequireString(info, 0, "object path");
  if (info.Length() < 2 || !info[1].IsArray()) throw Napi::TypeError::New(env, kindName + " names must be an array");
  Napi::Array names = info[1].As<Napi::Array>();
  std::unique_ptr<struct btf, void (*)(struct btf*)> btf(btf__parse_elf(path.c_str(), nullptr), btf__free);
  if (!btf) ThrowErrno(env, "btf__parse_elf(" + path + ")", errno);
  Napi::Object result = Napi::Object::New(env);
  for (uint32_t i = 0; i < names.Length(); i++) {
    std::string name = names.Get(i).ToString().Utf8Value();
    int id = btf__find_by_name_kind(btf.get(), name.c_str(), kind);
    if (id < 0) ThrowErrno(env, "btf__find_by_name_kind(" + kindName + " " + name + " in " + path + ")", id);
    result.Set(name, describe(btf.get(), btf__type_by_id(btf.get(), id)));
  }
  return result;
}

// btfLayout(objectPath, structNames) -> { [struct]: { size, members: [{ name, offset, size }] } }
Napi::Value BtfLayout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return DescribeBtfTypes(info, BTF_KIND_STRUCT, "struct", [env](const struct btf* btf, const struct btf_type* type) {
    const struct btf_member* member = btf_members(type);
    Napi::Array members = Napi::Array::New(env);
    for (uint16_t m = 0; m < btf_vlen(type); m++, member++) {
      Napi::Object entry = Napi::Object::New(env);
      entry.Set("name", Napi::String::New(env, btf__name_by_offset(btf, member->name_off)));
      entry.Set("offset", Napi::Number::New(env, btf_member_bit_offset(type, m) / 8));
      entry.Set("size", Napi::Number::New(env, btf__resolve_size(btf, member->type)));
      members.Set(m, entry);
    }
    Napi::Object layout = Napi::Object::New(env);
    layout.Set("size", Napi::Number::New(env, type->size));
    layout.Set("members", members);
    return layout;
  });
}

// btfEnums(objectPath, enumNames) -> { [enum]: { [enumerator]: value } }
Napi::Value BtfEnums(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return DescribeBtfTypes(info, BTF_KIND_ENUM, "enum", [env](const struct btf* btf, const struct btf_type* type) {
    const struct btf_enum* value = btf_enum(type);
    Napi::Object values = Napi::Object::New(env);
    for (uint16_t v = 0; v < btf_vlen(type); v++, value++) {
      bool isSigned = btf_kflag(type);
      double number = isSigned ? static_cast<double>(static_cast<int32_t>(value->val)) : static_cast<double>(value->val);
      values.Set(btf__name_by_offset(btf, value->name_off), Napi::Number::New(env, number));
    }
    return values;
  });
}
