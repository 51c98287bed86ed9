#!/bin/bash
# cgroup2-vm.sh [--] COMMAND [ARGS...]: run COMMAND as root inside a
# throw-away Linux VM whose only cgroup hierarchy is cgroup v2 (what
# Raspberry Pi OS and every current distribution boot with), and exit with
# its status. `make test-cgroup2` runs the agent's real-containerd tests and
# the e2e spine through it; this host may well be cgroup v1 (or hybrid).
#
# The guest is Debian's stock amd64 kernel (package linux-image-amd64,
# fetched once with `apt-get download` and unpacked into the cache, never
# installed) under qemu-system-x86_64, software emulation (TCG) by default.
# Its root is the host's root filesystem shared read-only over virtio-9p,
# with a tmpfs overlay on top: it runs the host's containerd, runc, iptables,
# CNI plugins and busybox, and nothing it writes reaches the host, except in
# the current directory, which is shared read-write at the same path. PID 1
# is a static busybox script: it mounts cgroup2 (only) on /sys/fs/cgroup,
# tmpfs on /tmp /run /var/tmp /var/lib/containerd, runs COMMAND with the
# host's bash in the same directory and environment, and powers off. There
# is no systemd, and no network card: a dummy interface (dummy0, 10.0.2.15/24)
# gives the node a LAN-like address; tests talk over loopback and their own
# network namespaces. COMMAND's stdout and stderr stream to ours.
# Exit status: COMMAND's, 124 on CGVM_TIMEOUT, 123 if the guest kernel hung (a
# CPU in soft lockup for 2 minutes: boot again), 125 if the VM died without one.
#
# Host packages (Debian 12): qemu-system-x86 busybox-static, plus what
# COMMAND uses from the host (containerd runc containernetworking-plugins
# iptables iproute2 for the tests). build/deps.sh test installs them.
#
# Knobs (environment):
#   CGVM_CACHE=dir     kernel + initramfs cache (default ${XDG_CACHE_HOME:-~/.cache}/edge-cgroup2-vm)
#   CGVM_MEM=2048      guest RAM, MiB           CGVM_CPUS=2   vCPUs
#   CGVM_TIMEOUT=secs  kill the VM after that long (exit 124); default 1200
#   CGVM_ACCEL=tcg     or kvm where /dev/kvm is real hardware virtualisation
#   CGVM_CPU=Nehalem   TCG CPU model (x86-64-v2, enough for Go's amd64 binaries)
#   CGVM_APPEND=...    more kernel command line (e.g. cgroup_disable=memory)
#   CGVM_DEBUG=1       kernel console and boot marks on stderr, keep the run dir
#                      (2: also xtrace of COMMAND). Otherwise the console's tail
#                      is printed only if the VM dies without reporting a status.
set -euo pipefail

die() { echo "cgroup2-vm: $*" >&2; exit 125; }
[ "${1:-}" = "--" ] && shift
[ $# -ge 1 ] || die "usage: $0 [--] COMMAND [ARGS...]"

CACHE=${CGVM_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/edge-cgroup2-vm}
MEM=${CGVM_MEM:-2048}
CPUS=${CGVM_CPUS:-2}
ACCEL=${CGVM_ACCEL:-tcg}
DEBUG=${CGVM_DEBUG:-0}
TIMEOUT=${CGVM_TIMEOUT:-1200}
PATH=$PATH:/usr/sbin:/sbin
BUSYBOX=$(command -v busybox || true)
[ -n "$BUSYBOX" ] || die "busybox not found (apt-get install busybox-static)"
! ldd "$BUSYBOX" >/dev/null 2>&1 || die "$BUSYBOX is dynamically linked (apt-get install busybox-static)"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found (apt-get install qemu-system-x86)"

QEMU_PID= CAT_OUT= CAT_ERR= CTL=
cleanup() {
	local p
	for p in $QEMU_PID $CAT_OUT $CAT_ERR; do kill "$p" 2>/dev/null || true; done
	for p in $QEMU_PID $CAT_OUT $CAT_ERR; do wait "$p" 2>/dev/null || true; done
	if [ -n "$CTL" ] && [ "$DEBUG" = 0 ]; then rm -rf "$CTL"; fi
	return 0
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9 # one run at a time prepares the cache

# ---------------------------------------------------------------- kernel ----
# Debian's linux-image-amd64 depends on the current linux-image-X-amd64:
# download that package (not install it) and unpack it into the cache. A
# cached kernel is used as it is: no network or apt lists are needed again.
moddir=$(ls -1d "$CACHE"/kernel/lib/modules/*-amd64 2>/dev/null | tail -1 || true)
if [ -z "$moddir" ]; then
	resolve() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
	pkg=$(resolve)
	if [ -z "$pkg" ] && [ "$(id -u)" = 0 ]; then
		apt-get update -qq >&2 || true
		pkg=$(resolve)
	fi
	[ -n "$pkg" ] || die "cannot resolve linux-image-amd64 to a kernel package (run apt-get update)"
	echo "cgroup2-vm: fetching $pkg into $CACHE (once)" >&2
	rm -rf "$CACHE/dl" "$CACHE/kernel"
	mkdir -p "$CACHE/dl" "$CACHE/kernel"
	# as root, apt-get downloads as user _apt, who may not reach the cache
	sandbox=()
	[ "$(id -u)" = 0 ] && sandbox=(-o APT::Sandbox::User=root)
	(cd "$CACHE/dl" && apt-get download -q "${sandbox[@]}" "$pkg" >&2) || die "apt-get download $pkg failed"
	dpkg-deb -x "$CACHE"/dl/*.deb "$CACHE/kernel"
	rm -rf "$CACHE/dl"
	moddir=$(ls -1d "$CACHE"/kernel/lib/modules/*-amd64 | tail -1)
fi
KVER=$(basename "$moddir")
KERNEL=$CACHE/kernel/boot/vmlinuz-$KVER
[ -r "$KERNEL" ] || die "kernel $KERNEL not readable (remove $CACHE/kernel to fetch it again)"
# The package ships no modules.dep (its postinst runs depmod): busybox makes
# one (and modules.alias), for the guest's busybox modprobe.
[ -e "$moddir/modules.dep" ] || "$BUSYBOX" depmod -b "$CACHE/kernel" "$KVER" || die "depmod failed"

# The uncompressed vmlinux boots directly (PVH), skipping the decompressor:
# seconds under TCG. An empty file marks a kernel without it (bzImage boot).
VMLINUX=$CACHE/vmlinux-$KVER
if [ ! -e "$VMLINUX" ]; then
	off=$(LC_ALL=C grep -aboP '\xfd7zXZ\x00' "$KERNEL" 2>/dev/null | head -1 | cut -d: -f1 || true)
	if [ -n "$off" ]; then tail -c +$((off + 1)) "$KERNEL" | xz -dc --single-stream >"$VMLINUX.tmp" 2>/dev/null || true; fi
	if [ -s "$VMLINUX.tmp" ] && [ "$(head -c 4 "$VMLINUX.tmp" | od -An -c | tr -d ' ')" = '177ELF' ]; then
		mv "$VMLINUX.tmp" "$VMLINUX"
	else
		rm -f "$VMLINUX.tmp"
		: >"$VMLINUX"
	fi
fi
BOOTIMG=$KERNEL
[ -s "$VMLINUX" ] && BOOTIMG=$VMLINUX

# ------------------------------------------------------------- initramfs ----
# /init (static busybox) loads the virtio and 9p modules, mounts the host's
# root read-only under a tmpfs overlay, makes every mount (cgroup2 among
# them) and switches root: in-RAM busybox is much faster under TCG than the
# host's dynamically linked tools over 9p.
INITRD=$CACHE/initrd-$KVER.cpio
INITRD_VERSION=edge-1
if [ ! -s "$INITRD" ] || [ "$(cat "$INITRD.v" 2>/dev/null)" != "$INITRD_VERSION:$moddir:$BUSYBOX" ]; then
	w=$(mktemp -d "$CACHE/initrd.XXXXXX")
	mkdir -p "$w"/{bin,dev,proc,sys,mnt,newroot,mods}
	cp "$BUSYBOX" "$w/bin/busybox"
	declare -A seen=()
	addmod() { # module $1 and its dependencies, dependencies first
		local m=$1 line f d
		[ -n "${seen[$m]:-}" ] && return 0
		seen[$m]=1
		line=$(awk -v m="$m" '{n=$1; sub(/:$/,"",n); sub(/.*\//,"",n); sub(/\.ko(\.xz|\.zst)?$/,"",n); gsub(/-/,"_",n); if (n==m) {print; exit}}' "$moddir/modules.dep")
		[ -n "$line" ] || return 0 # built in
		f=${line%%:*}
		for d in ${line#*:}; do
			d=${d##*/}
			d=${d%%.ko*}
			addmod "${d//-/_}"
		done
		case $f in
		*.ko.xz) xz -dc "$moddir/$f" >"$w/mods/$m.ko" ;;
		*.ko.zst) zstd -qdc "$moddir/$f" >"$w/mods/$m.ko" ;;
		*) cp "$moddir/$f" "$w/mods/$m.ko" ;;
		esac
		echo "$m" >>"$w/mods/order"
	}
	for m in virtio_pci 9pnet_virtio 9p overlay virtio_console virtio_rng; do addmod "$m"; done
	cat >"$w/init" <<'EOF_INIT'
#!/bin/busybox sh
B=/bin/busybox
$B mount -t proc proc /proc; $B mount -t sysfs sys /sys; $B mount -t devtmpfs dev /dev
K=/dev/kmsg
T=:; case " $($B cat /proc/cmdline) " in *" cgvm.debug="*) T=mark;; esac
mark() { echo "<2>cgvm: $*" > $K; }
fail() { echo "cgvm stage1: $*" > /dev/console; $B poweroff -f; }
$T stage1
for m in $($B cat /mods/order); do $B insmod /mods/$m.ko 2>/dev/null; done
O=trans=virtio,version=9p2000.L,msize=512000
R=/newroot
$B mkdir -p /mnt/lower /mnt/rw
$B mount -t 9p -o $O,ro,cache=loose hostroot /mnt/lower || fail "cannot mount the host root"
$B mount -t tmpfs -o mode=755 rw /mnt/rw; $B mkdir -p /mnt/rw/upper /mnt/rw/work
$B mount -t overlay -o lowerdir=/mnt/lower,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work overlay $R || fail "overlay mount failed"
$B mount -t tmpfs -o mode=755,nosuid,nodev run $R/run
$B mkdir -p $R/run/cgvm $R/run/cgvm-bin $R/run/lock
$B mount -t 9p -o $O,cache=none cgvmctl $R/run/cgvm || fail "cannot mount the control dir"
. $R/run/cgvm/conf
$B cp $B $R/run/cgvm-bin/busybox
for d in dev proc sys; do $B mount --move /$d $R/$d; done; K=$R/dev/kmsg
# cgroup v2 only. The root's cgroup.subtree_control is left as the kernel
# boots it (empty): creating a container's cgroup must enable what it needs.
$B mount -t cgroup2 -o nsdelegate cgroup2 $R/sys/fs/cgroup || fail "cgroup2 mount failed"
$B mkdir -p $R/dev/pts $R/dev/shm $R/dev/mqueue
$B mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts $R/dev/pts
$B mount -t tmpfs -o mode=1777,nosuid,nodev shm $R/dev/shm
$B mount -t mqueue mqueue $R/dev/mqueue
$B mount -t tmpfs -o mode=1777 tmp $R/tmp
$B mount -t tmpfs -o mode=1777 vartmp $R/var/tmp
$B mkdir -p $R/var/lib/containerd; $B mount -t tmpfs -o mode=711 containerd $R/var/lib/containerd
$B mount -t bpf bpf $R/sys/fs/bpf 2>/dev/null
$B ln -sf /proc/self/fd $R/dev/fd; $B ln -sf /proc/self/fd/0 $R/dev/stdin
$B ln -sf /proc/self/fd/1 $R/dev/stdout; $B ln -sf /proc/self/fd/2 $R/dev/stderr
# the host's work directory, read-write at its own path (after the tmpfs
# mounts, so a checkout under /tmp stays visible)
$B mkdir -p "$R$CWD"
$B mount -t 9p -o $O,cache=mmap work "$R$CWD" || fail "cannot mount $CWD"
# the guest kernel's modules, loaded on demand (bridge, veth, nf_tables, ...)
# by busybox modprobe: the host may have no kmod
$B mkdir -p "$R/lib/modules/$KVER"; $B mount --bind "$R$MODDIR" "$R/lib/modules/$KVER"
$B rm -f $R/sbin/modprobe; $B ln -s /run/cgvm-bin/busybox $R/sbin/modprobe
echo /sbin/modprobe > $R/proc/sys/kernel/modprobe
$B hostname cgvm
printf '127.0.0.1\tlocalhost cgvm\n::1\tlocalhost ip6-localhost ip6-loopback\n' > $R/etc/hosts
$B ip link set lo up
$T stage1 done
exec $B switch_root $R /run/cgvm-bin/busybox sh /run/cgvm/stage2
EOF_INIT
	chmod +x "$w/init"
	(cd "$w" && find . | "$BUSYBOX" cpio -o -H newc 2>/dev/null >"$INITRD.tmp")
	mv "$INITRD.tmp" "$INITRD"
	echo "$INITRD_VERSION:$moddir:$BUSYBOX" >"$INITRD.v"
	rm -rf "$w"
fi
flock -u 9
exec 9>&-

# ------------------------------------------------------------ this run ----
CTL=$(mktemp -d "${TMPDIR:-/tmp}/cgroup2-vm.XXXXXX")
chmod 755 "$CTL"
CWD=$(pwd -P)
[ "$CWD" != / ] || die "run it from a directory other than / (shared read-write)"
printf '%q ' "$@" >"$CTL/cmd"
# the environment, less what makes no sense in the guest
export -p | grep -Ev '^declare -x (BASH_[A-Z_]*|OLDPWD|PWD|SHLVL|_|TMPDIR|DISPLAY|XAUTHORITY|XDG_RUNTIME_DIR|DBUS_SESSION_BUS_ADDRESS|SSH_[A-Z_]*|TERMCAP|CGVM_[A-Z_]*|MAKEFLAGS|MFLAGS|MAKELEVEL)=' \
	>"$CTL/env" || true
printf 'CWD=%q\nKVER=%q\nMODDIR=%q\nDEBUG=%q\n' "$CWD" "$KVER" "$moddir" "$DEBUG" >"$CTL/conf"

# PID 1 on the real root (static busybox ash): runs COMMAND with the host's
# bash, records its status and powers off. It never returns: PID 1 exiting
# is a kernel panic.
cat >"$CTL/stage2" <<'EOF_STAGE2'
B=/run/cgvm-bin/busybox
. /run/cgvm/conf
K=/dev/kmsg
T=:; [ "$DEBUG" != 0 ] && T=mark
mark() { echo "<2>cgvm: $*" > $K; }
finish() { $T command done; echo "$1" > /run/cgvm/rc; $B sync; $B poweroff -f; $B sleep 30; }
# virtio-serial ports cgvm.out / cgvm.err: the host's stdout / stderr
exec 3>/dev/null 4>/dev/null
for p in /sys/class/virtio-ports/*; do
	case "$($B cat $p/name 2>/dev/null)" in
	cgvm.out) exec 3>/dev/${p##*/} ;;
	cgvm.err) exec 4>/dev/${p##*/} ;;
	esac
done
# no NIC: a dummy interface stands for the node's LAN address
$B modprobe dummy && $B ip addr add 10.0.2.15/24 dev dummy0 && $B ip link set dummy0 up
$T running command
/bin/bash -c '. /run/cgvm/env; export TMPDIR=/tmp; cd "$1" || exit 125; [ "$2" = 2 ] && set -x; eval "$(< /run/cgvm/cmd)"' \
	cgvm "$CWD" "$DEBUG" < /dev/null >&3 2>&4 3>&- 4>&-
finish $?
EOF_STAGE2

# ------------------------------------------------------------------ boot ----
ACCEL_OPTS=(-accel tcg,thread=multi -cpu "${CGVM_CPU:-Nehalem}")
[ "$ACCEL" = kvm ] && ACCEL_OPTS=(-accel kvm -cpu "${CGVM_CPU:-host}")
# guest port -> qemu pipe chardev -> FIFO -> cat -> our stdout/stderr (the
# stdio chardev takes EOF on stdin for a disconnect and stalls the port)
for f in out err; do mkfifo "$CTL/$f.in" "$CTL/$f.out"; done
cat "$CTL/out.out" &
CAT_OUT=$!
cat "$CTL/err.out" >&2 &
CAT_ERR=$!
if [ "$DEBUG" != 0 ]; then
	CONSOLE=(-chardev "file,id=ser,path=/dev/stderr,append=on" -serial chardev:ser)
	LOGOPT="loglevel=7 cgvm.debug=$DEBUG"
else
	CONSOLE=(-chardev "file,id=ser,path=$CTL/console.log" -serial chardev:ser)
	LOGOPT=quiet
fi
timeout "$TIMEOUT" qemu-system-x86_64 -nodefaults -no-user-config -display none -no-reboot \
	-M pc "${ACCEL_OPTS[@]}" -smp "$CPUS" -m "$MEM" \
	-kernel "$BOOTIMG" -initrd "$INITRD" \
	-append "console=ttyS0 panic=-1 pci=noacpi cryptomgr.notests mitigations=off tsc=reliable no_timer_check $LOGOPT ${CGVM_APPEND:-}" \
	"${CONSOLE[@]}" \
	-fsdev local,id=root,path=/,security_model=none,readonly=on,multidevs=remap \
	-device virtio-9p-pci,fsdev=root,mount_tag=hostroot \
	-fsdev "local,id=ctl,path=$CTL,security_model=none" \
	-device virtio-9p-pci,fsdev=ctl,mount_tag=cgvmctl \
	-fsdev "local,id=work,path=$CWD,security_model=none,multidevs=remap" \
	-device virtio-9p-pci,fsdev=work,mount_tag=work \
	-device virtio-serial-pci \
	-chardev "pipe,id=out,path=$CTL/out" -device virtserialport,chardev=out,name=cgvm.out \
	-chardev "pipe,id=err,path=$CTL/err" -device virtserialport,chardev=err,name=cgvm.err \
	-nic none -device virtio-rng-pci \
	</dev/null &
QEMU_PID=$!
# A guest kernel whose CPUs lock up under emulation (it happens, rarely,
# from boot: "soft lockup - CPU#0 stuck for 26s!", then for ever) never
# finishes: stop it once a CPU has been stuck 2 minutes, rather than at
# CGVM_TIMEOUT, and say so (exit 123), so the caller can boot again.
WATCH=
if [ "$DEBUG" = 0 ]; then
	(
		while kill -0 "$QEMU_PID" 2>/dev/null; do
			sleep 5
			stuck=$(grep -oE 'soft lockup - CPU#[0-9]+ stuck for [0-9]+s' "$CTL/console.log" 2>/dev/null |
				grep -oE '[0-9]+s$' | tr -d s | sort -n | tail -n 1) || stuck=0
			if [ "${stuck:-0}" -ge 120 ]; then
				: >"$CTL/hung"
				kill "$QEMU_PID" 2>/dev/null
				exit 0
			fi
		done
	) &
	WATCH=$!
fi
qrc=0
wait "$QEMU_PID" || qrc=$?
QEMU_PID=
if [ -n "$WATCH" ]; then
	kill "$WATCH" 2>/dev/null || true
	wait "$WATCH" 2>/dev/null || true
fi
: <>"$CTL/out.out"
: <>"$CTL/err.out" # unblock the cats if qemu never opened the FIFOs
wait $CAT_OUT $CAT_ERR 2>/dev/null || true
CAT_OUT= CAT_ERR=
[ -s "$CTL/rc" ] && exit "$(cat "$CTL/rc")"
if [ -e "$CTL/hung" ]; then
	echo "cgroup2-vm: the guest kernel hung (a CPU in soft lockup for 2 minutes); console:" >&2
	tail -n 5 "$CTL/console.log" >&2 2>/dev/null || true
	exit 123
fi
if [ "$qrc" = 124 ]; then
	echo "cgroup2-vm: timed out after ${TIMEOUT}s (CGVM_TIMEOUT)" >&2
	exit 124
fi
echo "cgroup2-vm: the VM exited (qemu status $qrc) without reporting one; console:" >&2
tail -n 40 "$CTL/console.log" >&2 2>/dev/null || true
exit 125
