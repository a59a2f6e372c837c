// SPDX-License-Identifier: BSD-3-Clause
// qda_core._iova: Python binding of qdarpc::RangeAllocator (range_allocator.hpp).
//
// Every call runs with the GIL held, which is what serializes access to an allocator: do not
// add py::call_guard<py::gil_scoped_release> here.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "range_allocator.hpp"

namespace py = pybind11;
using qdarpc::RangeAllocator;
using u64 = uint64_t;

namespace {

// A Python int as u64; ValueError (not pybind11's TypeError) when it is out of range.
u64 to_u64(const py::handle &v, const char *what)
{
	if (!PyLong_Check(v.ptr()))
		throw py::type_error(std::string(what) + " must be an int, not " +
				     std::string(py::str(py::type::handle_of(v).attr("__name__"))));
	unsigned long long r = PyLong_AsUnsignedLongLong(v.ptr());
	if (r == static_cast<unsigned long long>(-1) && PyErr_Occurred()) {
		PyErr_Clear();
		throw py::value_error(std::string(what) + " " + std::string(py::str(v)) +
				      " is outside 0..2**64-1");
	}
	return r;
}

py::object as_tuple_or_none(const std::optional<std::pair<u64, u64>> &r)
{
	if (!r)
		return py::none();
	return py::make_tuple(r->first, r->second);
}

py::list ranges(const std::map<u64, u64> &m)
{
	py::list out;
	for (const auto &kv : m)
		out.append(py::make_tuple(kv.first, kv.second));
	return out;
}

} // namespace

PYBIND11_MODULE(_iova, m)
{
	m.doc() = "Range allocator for device address spaces (IOVA, DSP VA, DRM fake mmap offsets).";
	m.attr("__version__") = QDARPC_VERSION;

	py::register_exception<qdarpc::range_exhausted>(m, "IovaExhausted", PyExc_MemoryError);
	py::register_exception<qdarpc::range_overlap>(m, "IovaOverlap", PyExc_ValueError);
	py::register_exception<qdarpc::range_not_found>(m, "IovaNotFound", PyExc_KeyError);
	// qdarpc::range_bad_arg derives from std::invalid_argument: pybind11 raises ValueError.

	py::class_<RangeAllocator>(m, "RangeAllocator", R"doc(
Best-fit allocator of granule-aligned ranges inside [start, start + size).

Sizes are rounded up to the granule. Gaps are kept by (size, start): alloc() takes the smallest
gap that can hold the aligned range, lowest start among equal sizes, at the lowest aligned
address in it. Operations are O(log n); an alloc() with an alignment above the granule may scan
the candidate gaps linearly, but only when no gap is large enough to fit at any alignment
(near exhaustion), so IovaExhausted always means that no aligned gap fits.

Not thread-safe by itself: every call holds the GIL, and callers serialize.
)doc")
		.def(py::init([](py::object start, py::object size, py::object granule) {
			     return RangeAllocator(to_u64(start, "start"), to_u64(size, "size"),
						   to_u64(granule, "granule"));
		     }),
		     py::arg("start"), py::arg("size"), py::arg("granule") = 4096,
		     "Manage [start, start + size); start and size must be multiples of granule (a power of two).")
		.def("alloc",
		     [](RangeAllocator &a, py::object size, py::object align) {
			     return a.alloc(to_u64(size, "size"), to_u64(align, "align"));
		     },
		     py::arg("size"), py::arg("align") = 0,
		     "Allocate size bytes (rounded up to the granule) at an align-aligned address; "
		     "align is a power of two >= granule, 0 for the granule. Returns the start. "
		     "Raises IovaExhausted if no gap fits, ValueError for size 0 or a bad alignment.")
		.def("alloc_at",
		     [](RangeAllocator &a, py::object addr, py::object size) {
			     return a.alloc_at(to_u64(addr, "addr"), to_u64(size, "size"));
		     },
		     py::arg("addr"), py::arg("size"),
		     "Reserve exactly [addr, addr + size) (size rounded up). Returns addr. Raises "
		     "IovaOverlap if it meets an allocation or leaves the range, ValueError if addr is "
		     "not granule-aligned or size is 0.")
		.def("free", [](RangeAllocator &a, py::object addr) { return a.free(to_u64(addr, "addr")); },
		     py::arg("addr"),
		     "Free the allocation starting at addr; returns its rounded size. Raises IovaNotFound "
		     "if no allocation starts there.")
		.def("find",
		     [](const RangeAllocator &a, py::object addr) {
			     return as_tuple_or_none(a.find(to_u64(addr, "addr")));
		     },
		     py::arg("addr"), "The allocation containing addr as (start, size), or None.")
		.def("items", [](const RangeAllocator &a) { return ranges(a.allocations()); },
		     "All allocations as a list of (start, size), sorted by start.")
		.def("gaps", [](const RangeAllocator &a) { return ranges(a.gaps()); },
		     "The free ranges as a list of (start, size), sorted by start.")
		.def("_check_invariants",
		     [](const RangeAllocator &a) {
			     std::string why = a.check();
			     if (!why.empty())
				     throw std::runtime_error("RangeAllocator invariant broken: " + why);
		     },
		     "Raise RuntimeError if the internal indexes are inconsistent (for tests).")
		.def_property_readonly("start", &RangeAllocator::start)
		.def_property_readonly("size", &RangeAllocator::size)
		.def_property_readonly("granule", &RangeAllocator::granule)
		.def_property_readonly("used", &RangeAllocator::used, "Bytes allocated.")
		.def_property_readonly("free_bytes", &RangeAllocator::free_bytes, "Bytes not allocated.")
		.def_property_readonly("largest_gap", &RangeAllocator::largest_gap,
				       "Size of the largest free range (0 when full).")
		.def("__len__", &RangeAllocator::count, "Number of allocations.")
		.def("__contains__",
		     [](const RangeAllocator &a, py::object addr) {
			     // Like `x in range(...)`: an int outside u64 is simply not contained.
			     if (!PyLong_Check(addr.ptr()))
				     throw py::type_error("address must be an int");
			     unsigned long long v = PyLong_AsUnsignedLongLong(addr.ptr());
			     if (v == static_cast<unsigned long long>(-1) && PyErr_Occurred()) {
				     PyErr_Clear();
				     return false;
			     }
			     return a.find(v).has_value();
		     },
		     py::arg("addr"), "True if addr lies inside an allocation.")
		.def("__iter__",
		     // Iterate over a snapshot: the allocator may change while the caller iterates.
		     [](const RangeAllocator &a) { return py::iter(ranges(a.allocations())); },
		     "Iterate over (start, size) of the allocations, sorted by start.")
		.def("__repr__", [](const RangeAllocator &a) {
			return "<RangeAllocator " + a.describe() + " granule=" + qdarpc::hex(a.granule()) +
			       " allocations=" + std::to_string(a.count()) + " used=" + qdarpc::hex(a.used()) + ">";
		});
}
