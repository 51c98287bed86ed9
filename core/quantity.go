package core

import (
	"encoding/json"
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// Quantity is a Kubernetes resource quantity ("250m", "32Mi", "1.5", "1e3")
// kept in the form the user wrote it. Parse it with MilliValue or Value.
type Quantity string

// UnmarshalJSON accepts both strings and bare numbers (YAML "cpu: 1").
func (q *Quantity) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*q = Quantity(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("quantity must be a string or a number")
	}
	*q = Quantity(n.String())
	return nil
}

// MaxQuantityLength bounds the text of a quantity. Kubernetes' own
// grammar allows no more than 18 significant digits; 64 leaves room for
// signs, a fraction and an exponent.
const MaxQuantityLength = 64

var (
	binarySuffixes  = map[string]int64{"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50, "Ei": 1 << 60}
	decimalSuffixes = map[string]int{"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
)

// parse returns the exact value of q as a rational number, following the
// Kubernetes grammar: <signedNumber><suffix>, suffix one of the binary SI
// (Ki..Ei), decimal SI (n, u, m, "", k, M, G, T, P, E) or a decimal exponent
// (e3, E-2).
func (q Quantity) parse() (*big.Rat, error) {
	s := string(q)
	if s == "" {
		return nil, fmt.Errorf("quantity is empty")
	}
	// Exact parsing is quadratic in the number of digits: a node reporting
	// a million-digit quantity once made every controller pass take seconds.
	if len(s) > MaxQuantityLength {
		return nil, fmt.Errorf("quantity %.16q... is %d characters long (at most %d)", s, len(s), MaxQuantityLength)
	}
	// Split the number from the suffix.
	i := 0
	if s[0] == '+' || s[0] == '-' {
		i++
	}
	digits, dots := 0, 0
	for ; i < len(s); i++ {
		c := s[i]
		if c >= '0' && c <= '9' {
			digits++
		} else if c == '.' {
			dots++
		} else {
			break
		}
	}
	num, suffix := s[:i], s[i:]
	if digits == 0 || dots > 1 {
		return nil, fmt.Errorf("quantity %q must start with a number", s)
	}
	r, ok := new(big.Rat).SetString(strings.TrimPrefix(num, "+"))
	if !ok {
		return nil, fmt.Errorf("quantity %q has an invalid number", s)
	}
	if m, ok := binarySuffixes[suffix]; ok {
		return r.Mul(r, new(big.Rat).SetInt64(m)), nil
	}
	exp, ok := decimalSuffixes[suffix]
	if !ok {
		// A decimal exponent: e or E followed by a signed integer.
		if len(suffix) < 2 || (suffix[0] != 'e' && suffix[0] != 'E') {
			return nil, fmt.Errorf("quantity %q has an unknown suffix %q (use m, k, M, G, Ki, Mi, Gi, ...)", s, suffix)
		}
		n, err := strconv.Atoi(suffix[1:])
		if err != nil || n > 100 || n < -100 {
			return nil, fmt.Errorf("quantity %q has an invalid exponent %q", s, suffix)
		}
		exp = n
	}
	p := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(abs(exp))), nil)
	if exp >= 0 {
		return r.Mul(r, new(big.Rat).SetInt(p)), nil
	}
	return r.Quo(r, new(big.Rat).SetInt(p)), nil
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// ceil rounds r up to an integer, as Kubernetes does for Value and MilliValue.
func ceil(r *big.Rat) (int64, error) {
	n, rem := new(big.Int).QuoRem(r.Num(), r.Denom(), new(big.Int))
	if rem.Sign() > 0 {
		n.Add(n, big.NewInt(1))
	}
	if !n.IsInt64() {
		return 0, fmt.Errorf("out of range")
	}
	return n.Int64(), nil
}

// fast parses the common forms ("250m", "32Mi", "1", "0.5", "2G") with
// integer arithmetic, scaled by scale (1 or 1000), rounding up. ok is false
// for anything else (exponents, values near the int64 range), which the
// exact path handles. Every product is checked before it is taken: an
// overflow here once turned a 18456744074-byte memory limit into 10 MB.
func (q Quantity) fast(scale int64) (v int64, ok bool) {
	s := string(q)
	if len(s) > MaxQuantityLength {
		return 0, false // the exact path says why
	}
	i, whole, frac, fracDigits := 0, int64(0), int64(0), 0
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		if whole > 1<<40 {
			return 0, false
		}
		whole = whole*10 + int64(s[i]-'0')
	}
	if i == 0 {
		return 0, false
	}
	if i < len(s) && s[i] == '.' {
		for i++; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			if fracDigits == 9 {
				return 0, false
			}
			frac = frac*10 + int64(s[i]-'0')
			fracDigits++
		}
	}
	var num, den int64 = 1, 1 // the suffix as a fraction
	switch s[i:] {
	case "":
	case "m":
		den = 1000
	case "k":
		num = 1000
	case "M":
		num = 1000_000
	case "G":
		num = 1000_000_000
	case "Ki", "Mi", "Gi":
		num = binarySuffixes[s[i:]]
	default:
		return 0, false
	}
	pow := int64(1)
	for j := 0; j < fracDigits; j++ {
		pow *= 10
	}
	// value = (whole + frac/pow) * num / den * scale, rounded up. whole is
	// below 2^44 and pow at most 10^9 (< 2^30), so whole*pow may not fit:
	// check each step against the headroom left for the next one.
	const limit = 1 << 62
	if whole > (limit-frac)/pow {
		return 0, false
	}
	n := whole*pow + frac
	if n > limit/num/scale {
		return 0, false
	}
	n *= num * scale
	d := pow * den
	return (n + d - 1) / d, true
}

// Value returns q in base units rounded up (bytes for memory).
func (q Quantity) Value() (int64, error) {
	if v, ok := q.fast(1); ok {
		return v, nil
	}
	r, err := q.parse()
	if err != nil {
		return 0, err
	}
	v, err := ceil(r)
	if err != nil {
		return 0, fmt.Errorf("quantity %q is out of range", string(q))
	}
	return v, nil
}

// MilliValue returns q in thousandths rounded up (millicores for cpu).
func (q Quantity) MilliValue() (int64, error) {
	if v, ok := q.fast(1000); ok {
		return v, nil
	}
	r, err := q.parse()
	if err != nil {
		return 0, err
	}
	v, err := ceil(r.Mul(r, big.NewRat(1000, 1)))
	if err != nil {
		return 0, fmt.Errorf("quantity %q is out of range", string(q))
	}
	return v, nil
}

// FormatMilliCPU renders millicores the way Kubernetes prints them.
func FormatMilliCPU(m int64) Quantity {
	if m%1000 == 0 {
		return Quantity(strconv.FormatInt(m/1000, 10))
	}
	return Quantity(strconv.FormatInt(m, 10) + "m")
}

// FormatBytes renders bytes with the largest exact binary suffix.
func FormatBytes(b int64) Quantity {
	for _, s := range []string{"Ei", "Pi", "Ti", "Gi", "Mi", "Ki"} {
		if m := binarySuffixes[s]; b != 0 && b%m == 0 {
			return Quantity(strconv.FormatInt(b/m, 10) + s)
		}
	}
	return Quantity(strconv.FormatInt(b, 10))
}
