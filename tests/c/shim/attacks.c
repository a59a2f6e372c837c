/* Hostile and unusual uses of the device shim (docs/shim.md): bad pointers, odd open flags, fds
 * closed or replaced behind the shim's back, fds a failed dup2 must leave alone, the generic
 * VFS ioctls. One line per check, "<name> <value>"; must never crash. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define WILD ((void *)8)
#define GET_DSP_INFO 0xc01c520d
#define HEAP_ALLOC 0xc0184800

static void line(const char *name, long v)
{
	printf("%s %ld\n", name, v);
}

/* -1 and errno as one value: -errno on failure, else the result */
static long res(long r)
{
	long v = r < 0 ? -errno : r;

	errno = 0;
	return v;
}

static int dsp_info(int fd)
{
	struct { uint32_t domain, attr, cap, reserved[4]; } i = { 3, 0, 0, { 0 } };

	return (int)res(ioctl(fd, GET_DSP_INFO, &i));
}

/* the kind of file @fd is now: "chr" character device, "reg" regular, "other", "closed" */
static const char *kind(int fd)
{
	struct stat st;

	if (fstat(fd, &st))
		return "closed";
	return S_ISCHR(st.st_mode) ? "chr" : S_ISREG(st.st_mode) ? "reg" : "other";
}

static void kline(const char *name, int fd)
{
	printf("%s %s\n", name, kind(fd));
}

/* a plain file of ours (a regular file, unlike /dev/null) */
static int plain_file(void)
{
	return memfd_create("plain", 0);
}

int main(void)
{
	struct stat st;
	int fd, d, plain;
	const char *uncached = "/dev/dma_heap/system-uncached";

	/* pointers no string or struct can be at: EFAULT, as from the kernel, never a crash */
	line("open_wild_path", res(open(WILD, O_RDONLY)));
	line("stat_wild_path", res(stat(WILD, &st)));
	line("access_wild_path", res(access(WILD, F_OK)));
	line("stat_node_wild_buf", res(stat("/dev/fastrpc-cdsp", WILD)));
	line("stat_node_top_buf", res(stat("/dev/fastrpc-cdsp", (struct stat *)(uintptr_t)-64)));
	line("lstat_node_readonly_buf", res(lstat("/dev/fastrpc-cdsp", (struct stat *)(void *)main)));

	/* open flags a character device answers */
	line("open_creat_excl_node", res(open("/dev/fastrpc-cdsp", O_RDWR | O_CREAT | O_EXCL, 0600)));
	line("open_directory_node", res(open("/dev/accel/accel0", O_RDONLY | O_DIRECTORY)));
	line("open_path_missing", res(open("/dev/accel/accel999", O_PATH)));
	fd = open("/dev/accel/accel0", O_PATH | O_CLOEXEC);
	line("open_path_node", fd >= 0);
	kline("open_path_fstat", fd);
	line("open_path_ioctl", dsp_info(fd));
	line("open_path_mmap", mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0) == MAP_FAILED ? -errno : 0);
	close(fd);
	line("access_node_exec", res(access("/dev/fastrpc-cdsp", X_OK)));
	line("access_node_rw", res(access("/dev/fastrpc-cdsp", R_OK | W_OK)));
	/* a heap that is not ours is the host's: answered as without the shim */
	fd = open(uncached, O_RDONLY);
	line("open_other_heap", fd >= 0 ? 0 : -errno);
	if (fd >= 0)
		close(fd);
	errno = 0;

	/* fopen of a node (libc's fopen does not call open()) */
	{
		FILE *f = fopen("/dev/fastrpc-cdsp", "r+e");

		line("fopen_node", f != NULL);
		line("fopen_node_ioctl", f ? dsp_info(fileno(f)) : -1);
		line("fopen_node_cloexec", f ? (fcntl(fileno(f), F_GETFD) & FD_CLOEXEC) != 0 : -1);
		if (f)
			fclose(f);
		errno = 0;
		f = fopen("/dev/fastrpc-cdsp", "wx");
		line("fopen_node_excl", f ? 0 : -errno);
		f = fopen("/dev/fastrpc-nosuch", "r");
		line("fopen_missing_node", f ? 0 : -errno);
		errno = 0;
	}

	/* the heap node itself has no mmap */
	fd = open("/dev/dma_heap/system", O_RDWR | O_CLOEXEC);
	line("mmap_heap_node", mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0) == MAP_FAILED ? -errno : 0);
	close(fd);

	/* a failed dup2/dup3 onto a device fd leaves it open and working */
	fd = open("/dev/fastrpc-cdsp", O_RDWR);
	line("dup2_bad_oldfd", res(dup2(9999, fd)));
	line("dup2_bad_oldfd_device_works", dsp_info(fd));
	line("dup3_bad_flags", res(dup3(fd, fd + 1, 0x7777)));
	line("dup3_bad_oldfd", res(dup3(9999, fd, O_CLOEXEC)));
	line("dup3_bad_oldfd_device_works", dsp_info(fd));
	/* dup2 of a plain fd onto a device fd: the number is plain now */
	d = open("/dev/fastrpc-cdsp", O_RDWR);
	line("dup2_plain_onto_device", res(dup2(fd, d)) == d);
	line("dup2_replaced_device_works", dsp_info(d));
	plain = plain_file();
	dup2(plain, d);
	kline("dup2_plain_fstat", d);
	line("dup2_plain_ioctl", dsp_info(d));
	close(d);
	close(plain);

	/* generic VFS ioctls act on the fd itself */
	line("fioclex", res(ioctl(fd, FIOCLEX)));
	line("fioclex_set", (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
	line("fionbio", res(ioctl(fd, FIONBIO, &(int){ 1 })));
	line("fionbio_set", (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0);
	line("fstatat_empty_path", fstatat(fd, "", &st, AT_EMPTY_PATH) == 0 && S_ISCHR(st.st_mode));
	close(fd);

	/* fds closed where the shim cannot see it: their numbers' next files are not devices */
	fd = open("/dev/fastrpc-cdsp", O_RDWR);
	fclose(fdopen(fd, "r"));
	plain = plain_file();
	line("fclose_reused", plain == fd);
	kline("fclose_reused_fstat", plain);
	line("fclose_reused_ioctl", dsp_info(plain));
	close(plain);
	fd = open("/dev/fastrpc-cdsp", O_RDWR);
	syscall(SYS_close, fd);
	plain = plain_file();
	line("raw_close_reused", plain == fd);
	kline("raw_close_reused_fstat", plain);
	line("raw_close_reused_ioctl", dsp_info(plain));
	close(plain);
	fd = open("/dev/fastrpc-cdsp", O_RDWR);
	d = fcntl(fd, F_DUPFD_CLOEXEC, 200);
	close(fd);
	line("close_range", res(close_range((unsigned)d, (unsigned)d, 0)));
	plain = plain_file();
	dup2(plain, d);
	kline("close_range_reused_fstat", d);
	line("close_range_reused_ioctl", dsp_info(d));
	close(d);
	fd = open("/dev/fastrpc-cdsp", O_RDWR);
	d = fcntl(fd, F_DUPFD, 300);
	close(fd);
	closefrom(300);
	dup2(plain, 300);
	kline("closefrom_reused_fstat", 300);
	close(300);
	close(plain);

	/* a pipe of the program's own sees EOF once the program closes its write end, also after
	 * the shim made the /dev/accel tree (and the helper that removes it) */
	{
		int p[2], n = 0;
		struct pollfd pf;
		DIR *dir;
		char c;

		if (pipe(p))
			return 1;
		dir = opendir("/dev/accel");
		while (dir && readdir(dir))
			n++;
		if (dir)
			closedir(dir);
		close(p[1]);
		pf.fd = p[0];
		pf.events = POLLIN;
		line("own_pipe_eof", poll(&pf, 1, 3000) == 1 && read(p[0], &c, 1) == 0);
		close(p[0]);
	}
	puts("done");
	return 0;
}
