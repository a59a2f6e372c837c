// SPDX-License-Identifier: BSD-3-Clause
// range_allocator.hpp - a best-fit allocator of address ranges in a 64-bit space.
//
// Used for context-bank IOVA spaces, DSP virtual address spaces and DRM fake mmap offsets.
// Pure C++17, no Python: the pybind11 module (iova_module.cpp) binds it.
//
// Structure: allocations in an ordered map start -> size; free gaps twice, by start (for
// neighbour lookup and coalescing) and by (size, start) (for best fit). Gaps are always
// coalesced and, with the allocations, tile [start, start + size) exactly.
//
// Thread-safety: none. Callers serialize; the Python binding keeps the GIL for every call.
#ifndef QDARPC_RANGE_ALLOCATOR_HPP
#define QDARPC_RANGE_ALLOCATOR_HPP

#include <cstdint>
#include <cstdio>
#include <iterator>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>

namespace qdarpc {

// No gap can hold the request (Python: IovaExhausted, a MemoryError).
struct range_exhausted : std::runtime_error {
	using std::runtime_error::runtime_error;
};
// alloc_at() over an existing allocation or outside the range (Python: IovaOverlap, a ValueError).
struct range_overlap : std::runtime_error {
	using std::runtime_error::runtime_error;
};
// free() of an address that starts no allocation (Python: IovaNotFound, a KeyError).
struct range_not_found : std::runtime_error {
	using std::runtime_error::runtime_error;
};
// Bad argument: zero size, bad alignment or granule, 64-bit overflow (Python: ValueError).
struct range_bad_arg : std::invalid_argument {
	using std::invalid_argument::invalid_argument;
};

inline std::string hex(uint64_t v)
{
	char buf[24];
	std::snprintf(buf, sizeof(buf), "%#llx", static_cast<unsigned long long>(v));
	return buf;
}

class RangeAllocator {
public:
	using u64 = uint64_t;
	using u128 = unsigned __int128; // ends of ranges that touch 2^64 do not fit in u64

	// Candidates probed in best-fit order before taking a gap that must fit (see alloc()).
	static constexpr int kBestFitProbes = 8;

	RangeAllocator(u64 start, u64 size, u64 granule = 4096)
		: start_(start), size_(size), granule_(granule)
	{
		if (granule == 0 || (granule & (granule - 1)))
			throw range_bad_arg("granule " + hex(granule) + " is not a power of two");
		if (size == 0)
			throw range_bad_arg("range size is 0");
		if (start % granule || size % granule)
			throw range_bad_arg("range " + hex(start) + "+" + hex(size) +
					    " is not a multiple of the granule " + hex(granule));
		if (u128(start) + size > kSpaceEnd)
			throw range_bad_arg("range " + hex(start) + "+" + hex(size) + " ends beyond 2^64");
		add_gap(start, size);
	}

	u64 start() const { return start_; }
	u64 size() const { return size_; }
	u64 granule() const { return granule_; }
	u64 used() const { return used_; }
	u64 free_bytes() const { return size_ - used_; }
	size_t count() const { return allocs_.size(); }
	u64 largest_gap() const { return by_size_.empty() ? 0 : by_size_.rbegin()->first; }

	// Allocate @size bytes (rounded up to the granule) at an @align-aligned address.
	// @align: a power of two >= granule, 0 meaning the granule.
	//
	// Policy: best fit, i.e. the smallest gap that can hold the aligned range, lowest start
	// among equal sizes. With the default alignment the smallest gap of at least @size always
	// fits, so this is O(log n). With a larger alignment a gap of size s fits only if its
	// aligned start leaves room; we probe the kBestFitProbes smallest candidates, then take
	// the smallest gap of at least size + align - granule (it fits wherever it starts), and
	// only if there is none scan all remaining candidates - so IovaExhausted is raised only
	// when no gap can hold the range, and the linear scan happens only near exhaustion.
	u64 alloc(u64 size, u64 align = 0)
	{
		size = round_size(size);
		align = check_align(align);

		auto it = by_size_.lower_bound({size, 0});
		for (int i = 0; it != by_size_.end() && i < kBestFitProbes; ++it, ++i)
			if (fits(*it, size, align))
				return take_aligned(*it, size, align);

		u128 sure = u128(size) + align - granule_;
		if (sure <= UINT64_MAX) {
			auto g = by_size_.lower_bound({u64(sure), 0});
			if (g != by_size_.end())
				return take_aligned(*g, size, align);
		}
		for (; it != by_size_.end() && it->first < sure; ++it)
			if (fits(*it, size, align))
				return take_aligned(*it, size, align);

		throw range_exhausted("no free range of " + hex(size) + " bytes aligned to " + hex(align) +
				      " in " + describe() + " (" + hex(free_bytes()) + " bytes free, largest gap " +
				      hex(largest_gap()) + ")");
	}

	// Reserve exactly [addr, addr + size) (size rounded up to the granule).
	u64 alloc_at(u64 addr, u64 size)
	{
		size = round_size(size);
		if (addr % granule_)
			throw range_bad_arg("address " + hex(addr) + " is not aligned to the granule " +
					    hex(granule_));
		u128 end = u128(addr) + size;
		if (addr < start_ || end > range_end())
			throw range_overlap("range " + hex(addr) + "+" + hex(size) + " is outside " + describe());
		auto g = gap_containing(addr);
		if (g == by_start_.end() || u128(g->first) + g->second < end) {
			auto a = first_alloc_overlapping(addr);
			throw range_overlap("range " + hex(addr) + "+" + hex(size) + " overlaps the allocation " +
					    hex(a->first) + "+" + hex(a->second));
		}
		take_at(g->first, g->second, addr, size);
		return addr;
	}

	// Free the allocation starting at @addr; returns its (rounded) size.
	u64 free(u64 addr)
	{
		auto it = allocs_.find(addr);
		if (it == allocs_.end()) {
			auto in = find(addr);
			if (in)
				throw range_not_found("address " + hex(addr) + " is inside the allocation " +
						      hex(in->first) + "+" + hex(in->second) + ", not its start");
			throw range_not_found("no allocation starts at " + hex(addr));
		}
		u64 a = it->first, size = it->second;
		allocs_.erase(it);
		used_ -= size;
		release(a, size);
		return size;
	}

	// The allocation containing @addr, as (start, size).
	std::optional<std::pair<u64, u64>> find(u64 addr) const
	{
		auto it = allocs_.upper_bound(addr);
		if (it == allocs_.begin())
			return std::nullopt;
		--it;
		if (u128(addr) < u128(it->first) + it->second)
			return *it;
		return std::nullopt;
	}

	const std::map<u64, u64> &allocations() const { return allocs_; }
	const std::map<u64, u64> &gaps() const { return by_start_; }

	// Verify the internal invariants; returns an empty string or what is wrong (for tests).
	std::string check() const
	{
		if (by_start_.size() != by_size_.size())
			return "gap indexes differ in size";
		u128 pos = start_, used = 0;
		auto a = allocs_.begin();
		auto g = by_start_.begin();
		bool last_was_gap = false;
		while (a != allocs_.end() || g != by_start_.end()) {
			bool take_gap = a == allocs_.end() || (g != by_start_.end() && g->first < a->first);
			u64 s = take_gap ? g->first : a->first, n = take_gap ? g->second : a->second;
			if (s != pos)
				return "hole or overlap at " + hex(u64(pos));
			if (n == 0 || s % granule_ || n % granule_)
				return "unaligned or empty range at " + hex(s);
			if (take_gap) {
				if (last_was_gap)
					return "uncoalesced gaps at " + hex(s);
				if (!by_size_.count({n, s}))
					return "gap " + hex(s) + " missing from the size index";
				++g;
			} else {
				used += n;
				++a;
			}
			last_was_gap = take_gap;
			pos += n;
		}
		if (pos != range_end())
			return "ranges do not reach the end";
		if (used != used_)
			return "used counter is wrong";
		return {};
	}

	std::string describe() const { return "[" + hex(start_) + ", " + end_text() + ")"; }

private:
	static constexpr u128 kSpaceEnd = u128(1) << 64;

	u128 range_end() const { return u128(start_) + size_; }
	std::string end_text() const
	{
		u128 e = range_end();
		return e == kSpaceEnd ? std::string("2^64") : hex(u64(e));
	}

	u64 round_size(u64 size) const
	{
		if (size == 0)
			throw range_bad_arg("size is 0");
		u128 r = (u128(size) + granule_ - 1) & ~u128(granule_ - 1);
		if (r > UINT64_MAX)
			throw range_bad_arg("size " + hex(size) + " overflows 2^64 when rounded to the granule");
		return u64(r);
	}

	u64 check_align(u64 align) const
	{
		if (align == 0)
			return granule_;
		if (align & (align - 1))
			throw range_bad_arg("alignment " + hex(align) + " is not a power of two");
		if (align < granule_)
			throw range_bad_arg("alignment " + hex(align) + " is below the granule " + hex(granule_));
		return align;
	}

	static u128 align_up(u64 v, u64 align) { return (u128(v) + align - 1) & ~u128(align - 1); }

	bool fits(const std::pair<u64, u64> &gap, u64 size, u64 align) const
	{
		u64 gsize = gap.first, gstart = gap.second; // by_size_ order: (size, start)
		return align_up(gstart, align) + size <= u128(gstart) + gsize;
	}

	u64 take_aligned(std::pair<u64, u64> gap, u64 size, u64 align)
	{
		u64 gsize = gap.first, gstart = gap.second;
		u64 addr = u64(align_up(gstart, align));
		take_at(gstart, gsize, addr, size);
		return addr;
	}

	// Carve [addr, addr + size) out of the gap gstart+gsize, which contains it.
	void take_at(u64 gstart, u64 gsize, u64 addr, u64 size)
	{
		remove_gap(gstart, gsize);
		u128 gend = u128(gstart) + gsize, end = u128(addr) + size;
		if (addr > gstart)
			add_gap(gstart, addr - gstart);
		if (end < gend)
			add_gap(u64(end), u64(gend - end));
		allocs_.emplace(addr, size);
		used_ += size;
	}

	// Return [addr, addr + size) to the free set, merging with the gaps on either side.
	void release(u64 addr, u64 size)
	{
		u128 end = u128(addr) + size;
		auto next = by_start_.lower_bound(addr);
		if (next != by_start_.begin()) {
			auto prev = std::prev(next);
			if (u128(prev->first) + prev->second == addr) {
				u64 ps = prev->first, pn = prev->second;
				remove_gap(ps, pn);
				addr = ps;
				size += pn;
			}
		}
		next = by_start_.lower_bound(addr);
		if (next != by_start_.end() && next->first == end) {
			u64 ns = next->first, nn = next->second;
			remove_gap(ns, nn);
			size += nn;
		}
		add_gap(addr, size);
	}

	std::map<u64, u64>::iterator gap_containing(u64 addr)
	{
		auto it = by_start_.upper_bound(addr);
		if (it == by_start_.begin())
			return by_start_.end();
		--it;
		return u128(addr) < u128(it->first) + it->second ? it : by_start_.end();
	}

	// For a range inside the space that no gap holds: the allocation it runs into (the one
	// containing @addr, else the one that ends the gap @addr is in).
	std::map<u64, u64>::const_iterator first_alloc_overlapping(u64 addr) const
	{
		auto it = allocs_.upper_bound(addr);
		if (it != allocs_.begin()) {
			auto p = std::prev(it);
			if (u128(p->first) + p->second > addr)
				return p;
		}
		return it;
	}

	void add_gap(u64 s, u64 n)
	{
		by_start_.emplace(s, n);
		by_size_.emplace(n, s);
	}

	void remove_gap(u64 s, u64 n)
	{
		by_start_.erase(s);
		by_size_.erase({n, s});
	}

	u64 start_, size_, granule_;
	u64 used_ = 0;
	std::map<u64, u64> allocs_;              // start -> size
	std::map<u64, u64> by_start_;            // free gaps: start -> size
	std::set<std::pair<u64, u64>> by_size_;  // free gaps: (size, start), best fit first
};

} // namespace qdarpc

#endif // QDARPC_RANGE_ALLOCATOR_HPP
