// Listening sockets for the DNS proxy that outlive the thread serving them: the agent's main thread binds them and
// keeps the descriptors; each proxy worker gets duplicates, so a worker that dies takes only its copies with it and
// queries queued meanwhile wait in the socket for the next worker.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fcntl.h>

#include <cstring>

#include "addon.h"

namespace {
constexpr int kListenBacklog = 511;

// bindDnsSocket(kind: 'udp4'|'udp6'|'tcp4'|'tcp6', address, port) -> { fd, port }
Napi::Value BindDnsSocket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string kind = RequireString(info, 0, "kind");
  const std::string address = RequireString(info, 1, "address");
  if (info.Length() < 3 || !info[2].IsNumber()) throw Napi::TypeError::New(env, "port must be a number");
  const int port = info[2].As<Napi::Number>().Int32Value();
  if (kind != "udp4" && kind != "udp6" && kind != "tcp4" && kind != "tcp6")
    throw Napi::TypeError::New(env, "kind must be udp4, udp6, tcp4 or tcp6");
  if (port < 0 || port > 65535) throw Napi::RangeError::New(env, "port must be within 0-65535");
  const bool v6 = kind.back() == '6';
  const bool tcp = kind[0] == 't';

  sockaddr_storage storage{};
  socklen_t length = 0;
  if (v6) {
    auto* sa = reinterpret_cast<sockaddr_in6*>(&storage);
    sa->sin6_family = AF_INET6;
    sa->sin6_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET6, address.c_str(), &sa->sin6_addr) != 1)
      throw Napi::TypeError::New(env, "address \"" + address + "\" is not an IPv6 address");
    length = sizeof(*sa);
  } else {
    auto* sa = reinterpret_cast<sockaddr_in*>(&storage);
    sa->sin_family = AF_INET;
    sa->sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, address.c_str(), &sa->sin_addr) != 1)
      throw Napi::TypeError::New(env, "address \"" + address + "\" is not an IPv4 address");
    length = sizeof(*sa);
  }
  const int fd = socket(v6 ? AF_INET6 : AF_INET, (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) ThrowErrno(env, "socket", errno);
  const int one = 1;
  auto fail = [&](const char* call) {
    const int err = errno;
    close(fd);
    ThrowErrno(env, call, err);
  };
  if (v6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) fail("setsockopt(IPV6_V6ONLY)");
  if (tcp && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) fail("setsockopt(SO_REUSEADDR)");
  if (bind(fd, reinterpret_cast<sockaddr*>(&storage), length) < 0) fail("bind");
  if (tcp && listen(fd, kListenBacklog) < 0) fail("listen");
  sockaddr_storage bound{};
  socklen_t boundLength = sizeof(bound);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &boundLength) < 0) fail("getsockname");
  const uint16_t boundPort = v6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                                : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  Napi::Object result = Napi::Object::New(env);
  result.Set("fd", Napi::Number::New(env, fd));
  result.Set("port", Napi::Number::New(env, boundPort));
  return result;
}

int RequireFd(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(info.Env(), "fd must be a number");
  const int fd = info[0].As<Napi::Number>().Int32Value();
  if (fd < 0) throw Napi::RangeError::New(info.Env(), "fd must not be negative");
  return fd;
}

// dupFd(fd) -> a new descriptor for the same socket (close-on-exec).
Napi::Value DupFd(const Napi::CallbackInfo& info) {
  const int copy = fcntl(RequireFd(info), F_DUPFD_CLOEXEC, 3);
  if (copy < 0) ThrowErrno(info.Env(), "fcntl(F_DUPFD_CLOEXEC)", errno);
  return Napi::Number::New(info.Env(), copy);
}

// closeFd(fd)
Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  if (close(RequireFd(info)) < 0) ThrowErrno(info.Env(), "close", errno);
  return info.Env().Undefined();
}
}  // namespace

void RegisterSocketFunctions(Napi::Env env, Napi::Object exports) {
  exports.Set("bindDnsSocket", Napi::Function::New(env, BindDnsSocket, "bindDnsSocket"));
  exports.Set("dupFd", Napi::Function::New(env, DupFd, "dupFd"));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd, "closeFd"));
}
