/* What a process sees under the device shim: nodes, metadata, directory listing, dup/close
 * tracking, the dma-buf heap, an invoke by reference on the legacy node, GEM mmap on accel,
 * and other paths untouched. One line per check: "<name> <result>". */
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
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

struct heap_alloc {
	uint64_t len;
	uint32_t fd, fd_flags;
	uint64_t heap_flags;
};

static void line(const char *name, long v)
{
	printf("%s %ld\n", name, v);
}

int main(void)
{
	struct stat st;
	struct heap_alloc a = { 8192, 0, O_RDWR | O_CLOEXEC, 0 };
	struct { uint32_t domain, attr, cap, reserved[4]; } info = { 3, 10, 99, { 0 } };
	struct { uint32_t handle; uint32_t sc; uint64_t args; } inv = { 1, 0, 0 };
	int fd, d, heap, entries = 0, r, other;
	DIR *dir;
	struct dirent *e;
	char name[64];

	fd = open("/dev/fastrpc-cdsp-secure", O_RDONLY | O_NONBLOCK);
	line("open_legacy", fd >= 0);
	line("fstat_chr", fstat(fd, &st) == 0 && S_ISCHR(st.st_mode));
	line("fstat_major", (long)major(st.st_rdev));
	line("get_dsp_info", ioctl(fd, 0xc01c520d, &info));
	line("get_dsp_info_cap_written", info.cap != 99);
	errno = 0;
	line("bad_ioctl", ioctl(fd, 0xc0ff52ff, &info));
	line("bad_ioctl_errno", errno);
	errno = 0;
	line("invoke_handle1_without_pd", ioctl(fd, 0xc0105203, &inv));
	line("invoke_handle1_errno", errno);
	d = dup(fd);
	close(fd);
	line("dup_survives_close", ioctl(d, 0xc01c520d, &info));
	r = fcntl(d, F_DUPFD_CLOEXEC, 100);
	line("fcntl_dupfd_works", ioctl(r, 0xc01c520d, &info));
	close(d);
	close(r);
	errno = 0;
	line("closed_fd_ioctl", ioctl(r, 0xc01c520d, &info));
	line("closed_fd_errno", errno);

	line("stat_accel1", stat("/dev/accel/accel1", &st) == 0 && S_ISCHR(st.st_mode));
	line("stat_accel1_major", (long)major(st.st_rdev));
	line("stat_accel1_minor", (long)minor(st.st_rdev));
	line("access_missing_node", access("/dev/fastrpc-nosuch", F_OK) == -1 && errno == ENOENT);
	dir = opendir("/dev/accel");
	while (dir && (e = readdir(dir)))
		entries += strncmp(e->d_name, "accel", 5) == 0;
	if (dir)
		closedir(dir);
	line("accel_entries", entries);
	fd = open("/sys/class/accel/accel1/dev", O_RDONLY);
	memset(name, 0, sizeof(name));
	line("sysfs_dev_read", fd >= 0 && read(fd, name, sizeof(name) - 1) > 0);
	printf("sysfs_dev %s", name);
	if (fd >= 0)
		close(fd);

	heap = open("/dev/dma_heap/system", O_RDONLY | O_CLOEXEC);
	line("heap_alloc", ioctl(heap, 0xc0184800, &a));
	line("heap_fd_valid", fcntl((int)a.fd, F_GETFD) >= 0);
	{
		char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, (int)a.fd, 0);

		line("heap_mmap", p != MAP_FAILED);
		if (p != MAP_FAILED) {
			memset(p, 0x5a, 8192);
			munmap(p, 8192);
		}
	}
	a.len = 0;
	errno = 0;
	line("heap_alloc_zero", ioctl(heap, 0xc0184800, &a));
	line("heap_alloc_zero_errno", errno);
	close(heap);

	/* accel: a GEM object created by ioctl and mapped at its fake offset (RFC layouts). */
	{
		struct { uint32_t handle, pad; uint64_t size; } gc = { 0, 0, 4096 };
		struct { uint32_t handle, pad; uint64_t offset; } mo = { 0, 0, 0 };
		int acc = open("/dev/accel/accel1", O_RDWR | O_CLOEXEC);
		unsigned char *p;

		line("gem_create", ioctl(acc, 0xc0106441, &gc));
		mo.handle = gc.handle;
		line("gem_mmap_offset", ioctl(acc, 0xc0106442, &mo));
		p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, acc, (off_t)mo.offset);
		line("gem_mmap", p != MAP_FAILED);
		if (p != MAP_FAILED) {
			p[0] = 7;
			line("gem_mmap_rw", p[0] == 7);
			munmap(p, 4096);
		}
		errno = 0;
		p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, acc, (off_t)(mo.offset + 0x100000));
		line("gem_mmap_bad_offset", p == MAP_FAILED && errno == EINVAL);
		close(acc);
	}

	other = open("/proc/self/status", O_RDONLY);
	line("other_path_untouched", other >= 0 && fstat(other, &st) == 0 && S_ISREG(st.st_mode));
	errno = 0;
	line("other_fd_ioctl_enotty", ioctl(other, 0xc01c520d, &info) == -1 && errno == ENOTTY);
	close(other);
	puts("done");
	return 0;
}
