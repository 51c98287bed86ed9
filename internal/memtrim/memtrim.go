// Package memtrim gives a long-running daemon's cold executable pages back
// to the kernel. A Go binary touches nearly all of its code and read-only
// data once while it starts (package initialisation, type registration),
// then runs a small loop; the kernel would reclaim those file-backed pages
// only under memory pressure, and until then they count against the
// process (RSS, PSS) on a small board. Pages needed later fault back in
// from the page cache or the disk.
package memtrim

import (
	"bufio"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ColdCode advises the kernel to page out this process's executable
// mappings (MADV_PAGEOUT, Linux 5.4+; MADV_COLD before that, or nothing).
// It returns how many bytes of mappings it advised.
func ColdCode() int64 {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0
	}
	defer f.Close()
	var total int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// address perms offset dev inode path; only read-only or executable
		// mappings of our own file: never data we write.
		if len(fields) < 6 || fields[5] != exe || strings.Contains(fields[1], "w") {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		// No readahead when these pages fault back: an idle daemon touches
		// its code sparsely, and reading ahead would refill what was freed.
		unix.Syscall(unix.SYS_MADVISE, uintptr(start), uintptr(end-start), uintptr(unix.MADV_RANDOM))
		if advise(uintptr(start), uintptr(end-start)) {
			total += int64(end - start)
		}
	}
	return total
}

func advise(addr, length uintptr) bool {
	for _, advice := range []int{unix.MADV_PAGEOUT, unix.MADV_COLD} {
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, addr, length, uintptr(advice)); errno == 0 {
			return true
		}
	}
	return false
}
