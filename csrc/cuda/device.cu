// CUDA device queries for bigstep._cuda.  Errors are returned, never thrown or
// aborted on, so a machine without a GPU or driver just reports no devices.
#include "common.cuh"

#include "bigstep/cuda_info.hpp"

namespace bigstep::cuda {
namespace {
__global__ void empty_kernel() {}
}  // namespace

void launch_error_selftest(Stream stream) {
  launch("launch_error_selftest", empty_kernel, dim3(1), dim3(2048), 0, stream);
}

#if defined(BIGSTEP_CUDA_EMU)
// The emulator (emu.hpp) is one device: the host.
std::vector<DeviceInfo> list_devices(std::string&) { return {DeviceInfo{0, 0, 0, "CPU emulation", 0}}; }
int runtime_version() { return 0; }
int driver_version() { return 0; }
int pointer_device(const void*) { return -1; }
#else
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

int pointer_device(const void* p) {
  cudaPointerAttributes attr;
  if (cudaPointerGetAttributes(&attr, p) != cudaSuccess) {
    cudaGetLastError();
    return -1;
  }
  return attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged ? attr.device : -1;
}
#endif

}  // namespace bigstep::cuda
