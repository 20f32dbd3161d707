// CUDA device queries for bigstep._cuda.  Errors are returned, never thrown or
// aborted on, so a machine without a GPU or driver just reports no devices.
#include <cuda_runtime.h>

#include "bigstep/cuda_info.hpp"

namespace bigstep::cuda {

std::vector<DeviceInfo> list_devices(std::string& error) {
  std::vector<DeviceInfo> out;
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver) {
    cudaGetLastError();
    return out;
  }
  if (err != cudaSuccess) {
    error = cudaGetErrorString(err);
    cudaGetLastError();
    return out;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    out.push_back(DeviceInfo{i, prop.major, prop.minor, prop.name, prop.totalGlobalMem});
  }
  return out;
}

int runtime_version() {
  int v = -1;
  return cudaRuntimeGetVersion(&v) == cudaSuccess ? v : -1;
}

int driver_version() {
  int v = 0;
  return cudaDriverGetVersion(&v) == cudaSuccess ? v : 0;
}

}  // namespace bigstep::cuda
