// Device queries of the CUDA module (csrc/cuda/device.cu).  Host-only header.
#pragma once
#include <string>
#include <vector>

namespace bigstep::cuda {

struct DeviceInfo {
  int index, major, minor;
  std::string name;
  std::size_t total_memory;
};

// Visible devices; on failure an empty list and the CUDA error text in `error`
// (cudaErrorNoDevice gives an empty list and no error).
std::vector<DeviceInfo> list_devices(std::string& error);
int runtime_version();  // e.g. 13000; -1 on error
int driver_version();   // 0 if no driver

}  // namespace bigstep::cuda
