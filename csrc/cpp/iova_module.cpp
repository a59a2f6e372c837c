// Placeholder until the IOVA allocator lands.
#include <pybind11/pybind11.h>
PYBIND11_MODULE(_iova, m) { m.attr("__version__") = QDARPC_VERSION; }
