package preflight

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// MinYear is the earliest year a sane clock shows. A Pi has no real-time
// clock: it boots in 1970 (or at its last shutdown, with fake-hwclock)
// until NTP answers, and until then no certificate is valid yet.
const MinYear = 2024

// Clock checks that the clock is not in the past.
func (h Host) Clock() Result {
	h = h.withDefaults()
	now := h.Now()
	if now.Year() < MinYear {
		return fail("turn on time synchronisation: timedatectl set-ntp true (apt-get install systemd-timesyncd), or set it by hand: date -s '2025-06-01 12:00'",
			"the clock says %s: TLS certificates are not valid yet", now.UTC().Format("2006-01-02 15:04 MST"))
	}
	return pass("%s", now.UTC().Format("2006-01-02 15:04 MST"))
}

// existingAncestor returns path or its nearest ancestor that exists.
func existingAncestor(path string) string {
	p := filepath.Clean(path)
	for {
		if _, err := os.Stat(p); err == nil || p == "/" || p == "." {
			return p
		}
		p = filepath.Dir(p)
	}
}

// MinFree is the free disk a data directory or image store needs.
const MinFree = 1 << 30

// DiskFree checks that the filesystem holding path (or, if path does not
// exist yet, its nearest ancestor) has at least min bytes free.
func DiskFree(path string, min int64) Result {
	at := existingAncestor(path)
	var st unix.Statfs_t
	if err := unix.Statfs(at, &st); err != nil {
		return fail(fmt.Sprintf("check that %s is mounted", at), "statfs %s: %v", at, err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	where := path
	if at != filepath.Clean(path) {
		where = fmt.Sprintf("%s (not made yet; on the filesystem of %s)", path, at)
	}
	if free < min {
		return fail(fmt.Sprintf("free space on the filesystem holding %s (df -h %s): remove unused images (edgectl image rm) or old logs, or move it to a larger disk", path, at),
			"%s free for %s, need %s", human(free), where, human(min))
	}
	return pass("%s free for %s", human(free), where)
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", n>>10)
}

// Writable checks that the program can write in dir: it writes, syncs and
// removes a probe file there, or (dir not made yet) checks that its nearest
// existing ancestor is a writable directory.
func (h Host) Writable(dir string) Result {
	h = h.withDefaults()
	at := existingAncestor(dir)
	fi, err := os.Stat(at)
	if err != nil {
		return fail("", "%s: %v", at, err)
	}
	if !fi.IsDir() {
		return fail(fmt.Sprintf("remove %s or choose another --data-dir", at), "%s is not a directory", at)
	}
	f, err := os.CreateTemp(at, ".edge-check-*")
	if err != nil {
		if errors.Is(err, fs.ErrPermission) && !h.Root {
			return needsRoot("cannot write in %s", at)
		}
		return fail(fmt.Sprintf("make %s writable (read-only filesystem? mount -o remount,rw), or choose another --data-dir", at), "cannot write in %s: %v", at, err)
	}
	_, err = f.Write([]byte("edge\n"))
	if err == nil {
		err = f.Sync()
	}
	f.Close()
	os.Remove(f.Name())
	if err != nil {
		return fail(fmt.Sprintf("check the disk under %s (dmesg; an SD card failing goes read-only)", at), "writing in %s: %v", at, err)
	}
	if at != filepath.Clean(dir) {
		return pass("%s does not exist yet; %s is writable", dir, at)
	}
	return pass("%s is writable", dir)
}

// Port checks that addr (HOST:PORT) is free to listen on, or is held by a
// running program called owner (the daemon being checked, already up).
func (h Host) Port(flag, addr, owner string) Result {
	h = h.withDefaults()
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		ln.Close()
		return pass("%s is free", addr)
	}
	switch {
	case errors.Is(err, syscall.EACCES):
		return needsRoot("%s: listening on a port below 1024", addr)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fail(fmt.Sprintf("pass a %s with an address of this machine (or none: %s :PORT listens on all)", flag, flag), "%s: no interface has that address", addr)
	case !errors.Is(err, syscall.EADDRINUSE):
		return fail(fmt.Sprintf("check %s", flag), "%s: %v", addr, err)
	}
	_, p, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(p)
	pid, comm := h.listener(port)
	if comm == owner {
		return pass("%s is held by a running %s (pid %d)", addr, owner, pid)
	}
	by := "another program"
	if comm != "" {
		by = fmt.Sprintf("%s (pid %d)", comm, pid)
	} else if !h.Root {
		by += " (run as root to see which)"
	}
	return fail(fmt.Sprintf("stop %s, or pass %s with a free port (ss -ltnp shows who listens where)", by, flag), "%s is in use by %s", addr, by)
}

// listener finds the process listening on TCP port: the socket's inode in
// /proc/net/tcp{,6}, then the process holding it among /proc/*/fd (only
// one's own processes without root). 0, "" if not found.
func (h Host) listener(port int) (int, string) {
	inodes := map[string]bool{}
	for _, f := range []string{"tcp", "tcp6"} {
		file, err := os.Open(h.proc("net", f))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(file)
		for sc.Scan() {
			fl := strings.Fields(sc.Text())
			if len(fl) < 10 || fl[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, _ := strings.Cut(fl[1], ":")
			if p, err := strconv.ParseInt(hexPort, 16, 32); err == nil && int(p) == port {
				inodes["socket:["+fl[9]+"]"] = true
			}
		}
		file.Close()
	}
	if len(inodes) == 0 {
		return 0, ""
	}
	procs, _ := os.ReadDir(h.Proc)
	for _, d := range procs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		fds, _ := os.ReadDir(h.proc(d.Name(), "fd"))
		for _, fd := range fds {
			if target, err := os.Readlink(h.proc(d.Name(), "fd", fd.Name())); err == nil && inodes[target] {
				return pid, strings.TrimSpace(readOr(h.proc(d.Name(), "comm")))
			}
		}
	}
	return 0, ""
}

// SQLite checks that SQLite works in dir (or, dir not made yet, in the
// system's temporary directory): usable opens a database there in WAL
// mode, writes, reads and removes it.
func SQLite(dir string, usable func(dir string) error) Result {
	at := dir
	if _, err := os.Stat(dir); err != nil {
		at = os.TempDir()
	}
	if err := usable(at); err != nil {
		return fail(fmt.Sprintf("the filesystem of %s must support SQLite's locking and shared memory (not NFS or a FUSE mount): choose another --data-dir", at),
			"SQLite in %s: %v", at, err)
	}
	return pass("a database opens, writes and reads in %s", at)
}
