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
  exports.Set("possibleCpus", Napi::Function::New(env, PossibleCpus, "possibleCpus"));
  return exports;
}

NODE_API_MODULE(egressguard_native, InitAddon)
