package core

import (
	"math/big"
	"strings"
	"testing"
)

func TestQuantity(t *testing.T) {
	for _, tt := range []struct {
		in         Quantity
		milli, val int64
		wantErr    bool
	}{
		{in: "250m", milli: 250, val: 1},
		{in: "1", milli: 1000, val: 1},
		{in: "0.5", milli: 500, val: 1},
		{in: "1.5", milli: 1500, val: 2},
		{in: "0.1m", milli: 1, val: 1},
		{in: "32Mi", milli: 33554432000, val: 33554432},
		{in: "128M", milli: 128000000000, val: 128000000},
		{in: "1Ki", milli: 1024000, val: 1024},
		{in: "1k", milli: 1000000, val: 1000},
		{in: "1e3", milli: 1000000, val: 1000},
		{in: "1E3", milli: 1000000, val: 1000},
		{in: "5E", wantErr: true}, // millis overflow int64
		{in: "1Gi", milli: 1073741824000, val: 1073741824},
		{in: "100n", milli: 1, val: 1},
		{in: "+2", milli: 2000, val: 2},
		{in: "-1", milli: -1000, val: -1},
		{in: "", wantErr: true},
		{in: "Mi", wantErr: true},
		{in: "1mi", wantErr: true},
		{in: "1K", wantErr: true},
		{in: "1 Mi", wantErr: true},
		{in: "1.2.3", wantErr: true},
		{in: "abc", wantErr: true},
		{in: "1e", wantErr: true},
		{in: "1MiB", wantErr: true},
	} {
		t.Run(string(tt.in), func(t *testing.T) {
			m, err := tt.in.MilliValue()
			if tt.wantErr {
				if err == nil {
					t.Fatalf("MilliValue(%q) = %d, want error", tt.in, m)
				}
				return
			}
			if err != nil || m != tt.milli {
				t.Fatalf("MilliValue(%q) = %d, %v; want %d", tt.in, m, err, tt.milli)
			}
			if v, err := tt.in.Value(); err != nil || v != tt.val {
				t.Fatalf("Value(%q) = %d, %v; want %d", tt.in, v, err, tt.val)
			}
		})
	}
}

func TestQuantityUnmarshalNumber(t *testing.T) {
	obj, err := DecodeManifest([]byte(`
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers:
  - name: c
    image: busybox
    resources: {limits: {cpu: 1, memory: 67108864}}
`))
	if err != nil {
		t.Fatal(err)
	}
	c := obj.(*Pod).Spec.Containers[0]
	if c.Resources.Limits["cpu"] != "1" || c.Resources.Limits["memory"] != "67108864" {
		t.Fatalf("limits = %v", c.Resources.Limits)
	}
}

func TestFormat(t *testing.T) {
	if got := FormatMilliCPU(250); got != "250m" {
		t.Fatal(got)
	}
	if got := FormatMilliCPU(2000); got != "2" {
		t.Fatal(got)
	}
	if got := FormatBytes(33554432); got != "32Mi" {
		t.Fatal(got)
	}
	if got := FormatBytes(1000); got != "1000" {
		t.Fatal(got)
	}
}

// The fast path agrees with the exact one.
func TestQuantityFastPath(t *testing.T) {
	for _, s := range []string{"0", "1", "250m", "0.5", "1.5", "0.1m", "1.25", "32Mi", "1Gi", "1.5Gi", "128M", "2G", "1k", "100n", "999999m", "0.001", "7.000000001"} {
		q := Quantity(s)
		r, err := q.parse()
		if err != nil {
			t.Fatal(err)
		}
		wantMilli, _ := ceil(new(big.Rat).Mul(r, big.NewRat(1000, 1)))
		wantVal, _ := ceil(r)
		if v, ok := q.fast(1000); ok && v != wantMilli {
			t.Errorf("fast milli %q = %d, want %d", s, v, wantMilli)
		}
		if v, ok := q.fast(1); ok && v != wantVal {
			t.Errorf("fast value %q = %d, want %d", s, v, wantVal)
		}
	}
}

// Values whose fast-path arithmetic would overflow int64 must take the
// exact path: these once came out negative, or as 10 MB instead of 18 GB.
func TestQuantityOverflow(t *testing.T) {
	for _, tt := range []struct {
		in         Quantity
		milli, val int64
	}{
		{"100000000000.00000000", 100000000000000, 100000000000},
		{"18456744074.000000000", 18456744074000, 18456744074},
		{"18446744074.000000000", 18446744074000, 18446744074},
		{"1099511627775.999999999", 1099511627776000, 1099511627776},
		{"4611686018427387903m", 4611686018427387903, 4611686018427388},
	} {
		m, err := tt.in.MilliValue()
		if err != nil || m != tt.milli {
			t.Errorf("MilliValue(%q) = %d, %v; want %d", tt.in, m, err, tt.milli)
		}
		v, err := tt.in.Value()
		if err != nil || v != tt.val {
			t.Errorf("Value(%q) = %d, %v; want %d", tt.in, v, err, tt.val)
		}
	}
}

func TestQuantityTooLong(t *testing.T) {
	long := Quantity(strings.Repeat("9", MaxQuantityLength+1))
	if _, err := long.Value(); err == nil || !strings.Contains(err.Error(), "at most 64") {
		t.Fatalf("Value of a %d-digit quantity: err = %v, want a length error", len(long), err)
	}
	ok := Quantity("0." + strings.Repeat("0", MaxQuantityLength-3) + "1")
	if _, err := ok.MilliValue(); err != nil {
		t.Fatalf("a %d-character quantity is refused: %v", len(ok), err)
	}
}

// FuzzQuantity checks that the integer fast path agrees with exact rational
// arithmetic, and that parsing never panics or runs away on long input.
func FuzzQuantity(f *testing.F) {
	for _, s := range []string{"250m", "1.5Gi", "100000000000.00000000", "18456744074.000000000", "1e3", "-1", "0.1m", "5E", "1099511627775.999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q := Quantity(s)
		r, err := q.parse()
		for _, scale := range []int64{1, 1000} {
			v, ok := q.fast(scale)
			if !ok {
				continue
			}
			if err != nil {
				t.Fatalf("fast(%d) accepted %q = %d, exact path refuses it: %v", scale, s, v, err)
			}
			want, cerr := ceil(new(big.Rat).Mul(r, big.NewRat(scale, 1)))
			if cerr != nil || v != want {
				t.Fatalf("fast(%d) %q = %d, exact = %d (%v)", scale, s, v, want, cerr)
			}
		}
		if len(s) > MaxQuantityLength && err == nil {
			t.Fatalf("parse accepted a %d-character quantity", len(s))
		}
	})
}
