{
  "targets": [
    {
      "target_name": "egressguard_native",
      "sources": ["src/addon.cc", "src/errors.cc", "src/object.cc", "src/map.cc", "src/ringbuf.cc", "src/introspect.cc", "src/tc.cc", "src/sockets.cc"],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Werror"],
      "libraries": ["-lbpf", "-lelf", "-lz"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
