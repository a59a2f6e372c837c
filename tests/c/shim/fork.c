/* fork() under the device shim: each child gets a fresh emulator (its inherited device fds are
 * plain memfds, docs/shim.md), works with nodes of its own, and touches nothing of its parent's:
 * the parent's GEM handle, its mapping and its /dev/accel listing survive the children. One
 * line per check, "<name> <value>". Usage: fork CHILDREN */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define GEM_CREATE 0xc0106441
#define GEM_MMAP_OFFSET 0xc0106442
#define GEM_CLOSE 0xc0086409
#define HEAP_ALLOC 0xc0184800

struct gem_create { uint32_t handle, pad; uint64_t size; };
struct gem_offset { uint32_t handle, pad; uint64_t offset; };
struct heap_alloc { uint64_t len; uint32_t fd, fd_flags; uint64_t heap_flags; };

static int entries(void)
{
	DIR *d = opendir("/dev/accel");
	struct dirent *e;
	int n = 0;

	while (d && (e = readdir(d)))
		n += strncmp(e->d_name, "accel", 5) == 0;
	if (d)
		closedir(d);
	return n;
}

/* Open the nodes, make and map a GEM object, allocate from the heap: 0 or the failed step. */
static int work(void)
{
	int acc = open("/dev/accel/accel0", O_RDWR | O_CLOEXEC), heap = open("/dev/dma_heap/system", O_RDWR);
	struct gem_create gc = { 0, 0, 4096 };
	struct gem_offset mo = { 0, 0, 0 };
	struct heap_alloc a = { 8192, 0, O_RDWR | O_CLOEXEC, 0 };
	unsigned char *p;

	if (acc < 0 || heap < 0)
		return 1;
	if (ioctl(acc, GEM_CREATE, &gc))
		return 2;
	mo.handle = gc.handle;
	if (ioctl(acc, GEM_MMAP_OFFSET, &mo))
		return 3;
	p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, acc, (off_t)mo.offset);
	if (p == MAP_FAILED)
		return 4;
	p[0] = 1;
	munmap(p, 4096);
	if (ioctl(heap, HEAP_ALLOC, &a))
		return 5;
	if (entries() < 1)
		return 6;
	close((int)a.fd);
	close(heap);
	close(acc);
	return 0;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 4, acc, i, bad = 0, listed;
	struct gem_create gc = { 0, 0, 4096 };
	struct gem_offset mo = { 0, 0, 0 };
	unsigned char *p;

	acc = open("/dev/accel/accel0", O_RDWR);
	if (acc < 0 || ioctl(acc, GEM_CREATE, &gc))
		return 1;
	mo.handle = gc.handle;
	if (ioctl(acc, GEM_MMAP_OFFSET, &mo))
		return 1;
	p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, acc, (off_t)mo.offset);
	if (p == MAP_FAILED)
		return 1;
	p[0] = 42;
	listed = entries();
	fflush(stdout);
	for (i = 0; i < n; i++) {
		if (fork() == 0) {
			struct gem_offset m2 = { gc.handle, 0, 0 };
			struct { uint32_t handle, pad; } cl = { gc.handle, 0 };
			int r1 = ioctl(acc, GEM_MMAP_OFFSET, &m2), e1 = errno;
			int r2 = ioctl(acc, GEM_CLOSE, &cl), e2 = errno;

			close(acc);
			/* inherited: plain memfds (ENOTTY), whatever the child does with them */
			if (r1 != -1 || e1 != ENOTTY || r2 != -1 || e2 != ENOTTY)
				_exit(10);
			_exit(work());
		}
	}
	for (i = 0; i < n; i++) {
		int st;

		if (wait(&st) < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) {
			bad++;
			fprintf(stderr, "child status %#x\n", st);
		}
	}
	printf("bad_children %d\n", bad);
	mo.offset = 0;
	printf("parent_gem_handle_survives %d\n", ioctl(acc, GEM_MMAP_OFFSET, &mo) == 0);
	printf("parent_mapping_untouched %d\n", p[0] == 42);
	printf("parent_listing_survives %d\n", entries() == listed && listed > 0);
	printf("parent_works_after %d\n", work());
	munmap(p, 4096);
	close(acc);
	puts("done");
	return 0;
}
