#include "addon.h"

Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  InstallLibbpfLogCapture();
  exports.Set("BpfObject", BpfObject::Init(env));
  exports.Set("BpfProgram", BpfProgram::Init(env));
  exports.Set("BpfLink", BpfLink::Init(env));
  exports.Set("BpfMap", BpfMap::Init(env));
  exports.Set("RingBuffer", RingBuffer::Init(env));
  exports.Set("probeFeatures", Napi::Function::New(env, ProbeFeatures, "probeFeatures"));
  exports.Set("btfLayout", Napi::Function::New(env, BtfLayout, "btfLayout"));
  exports.Set("btfEnums", Napi::Function::New(env, BtfEnums, "btfEnums"));
  exports.Set("ifNameToIndex", Napi::Function::New(env, IfNameToIndex, "ifNameToIndex"));
  exports.Set("tcAttachIngress", Napi::Function::New(env, TcAttachIngress, "tcAttachIngress"));
  exports.Set("tcDetachIngress", Napi::Function::New(env, TcDetachIngress, "tcDetachIngress"));
  exports.Set("tcQueryIngress", Napi::Function::New(env, TcQueryIngress, "tcQueryIngress"));
  exports.Set("tcAttachEgress", Napi::Function::New(env, TcAttachEgress, "tcAttachEgress"));
  exports.Set("tcDetachEgress", Napi::Function::New(env, TcDetachEgress, "tcDetachEgress"));
  exports.Set("tcQueryEgress", Napi::Function::New(env, TcQueryEgress, "tcQueryEgress"));
  RegisterSocketFunctions(env, exports);
  return exports;
}

NODE_API_MODULE(egressguard_native, InitAddon)
