package core

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"time"
)

// CronSchedule is a parsed standard cron schedule: five fields (minute,
// hour, day of month, month, day of week) or one of the descriptors
// @yearly, @annually, @monthly, @weekly, @daily, @midnight and @hourly.
//
// It means what Kubernetes' CronJob controller (robfig/cron) means by it:
//   - a day matches when both day fields match if either of them is "*" or
//     "?" (without a step), else when either does ("0 0 1 * MON" runs on the
//     first of the month and on Mondays);
//   - times are wall-clock times in the location of the time handed to Next
//     and Prev, and a schedule matches each minute whose reading on that
//     clock matches: on a daylight-saving change a time in the skipped hour
//     does not occur that day, and a time in the repeated hour occurs twice.
//     A schedule that must run exactly once a day picks a time outside
//     01:00-03:00 or the zone UTC.
//
// Unlike robfig/cron, 7 is accepted for Sunday (as Vixie cron does).
type CronSchedule struct {
	minute, hour, dom, month, dow uint64
	domStar, dowStar              bool
}

type cronField struct {
	name     string
	min, max int
	names    map[string]int
}

var (
	cronMonthNames = map[string]int{"JAN": 1, "FEB": 2, "MAR": 3, "APR": 4, "MAY": 5, "JUN": 6,
		"JUL": 7, "AUG": 8, "SEP": 9, "OCT": 10, "NOV": 11, "DEC": 12}
	cronDayNames = map[string]int{"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}
	cronFields   = [5]cronField{
		{name: "minute", min: 0, max: 59},
		{name: "hour", min: 0, max: 23},
		{name: "day of month", min: 1, max: 31},
		{name: "month", min: 1, max: 12, names: cronMonthNames},
		{name: "day of week", min: 0, max: 7, names: cronDayNames},
	}
	cronDescriptors = map[string]string{
		"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
		"@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
	}
)

// cronSearchYears bounds a search for the next or previous run: every
// valid schedule matches within 8 years (February 29th), and validation
// refuses one that never matches.
const cronSearchYears = 10

// ParseCron parses a standard cron schedule.
func ParseCron(spec string) (*CronSchedule, error) {
	s := strings.TrimSpace(spec)
	if s == "" {
		return nil, fmt.Errorf("empty schedule")
	}
	if strings.HasPrefix(s, "TZ=") || strings.HasPrefix(s, "CRON_TZ=") {
		return nil, fmt.Errorf("%q: a time zone in the schedule is not supported; set spec.timeZone instead", spec)
	}
	if s[0] == '@' {
		expanded, ok := cronDescriptors[strings.ToLower(s)]
		if !ok {
			return nil, fmt.Errorf("%q: unknown descriptor (use @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly)", spec)
		}
		s = expanded
	}
	fields := strings.Fields(s)
	if len(fields) != 5 {
		return nil, fmt.Errorf("%q: expected 5 fields (minute hour day-of-month month day-of-week), found %d", spec, len(fields))
	}
	var c CronSchedule
	var err error
	out := [5]*uint64{&c.minute, &c.hour, &c.dom, &c.month, &c.dow}
	stars := [5]bool{}
	for i, f := range fields {
		if *out[i], stars[i], err = parseCronField(f, cronFields[i]); err != nil {
			return nil, fmt.Errorf("%q: %v", spec, err)
		}
	}
	if c.dow&(1<<7) != 0 { // 7 is Sunday too
		c.dow = c.dow&^(1<<7) | 1
	}
	c.domStar, c.dowStar = stars[2], stars[4]
	// A schedule that never matches ("0 0 30 2 *") is refused rather than
	// searched for on every pass.
	if c.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		return nil, fmt.Errorf("%q never matches a date", spec)
	}
	return &c, nil
}

// parseCronField parses one comma-separated field into a bit set; star
// reports whether it is "*" or "?" without a step (which selects the
// AND rule for the day fields).
func parseCronField(expr string, f cronField) (set uint64, star bool, err error) {
	for _, part := range strings.Split(expr, ",") {
		rng, stepStr, hasStep := strings.Cut(part, "/")
		step := 1
		if hasStep {
			if step, err = strconv.Atoi(stepStr); err != nil || step < 1 || step > f.max {
				return 0, false, fmt.Errorf("%s field: step %q is not a positive number", f.name, stepStr)
			}
		}
		var lo, hi int
		switch {
		case rng == "*" || rng == "?":
			lo, hi = f.min, f.max
			if f.name == "day of week" {
				hi = 6
			}
			star = star || step == 1
		case rng == "":
			return 0, false, fmt.Errorf("%s field: empty value in %q", f.name, expr)
		default:
			a, b, isRange := strings.Cut(rng, "-")
			if lo, err = cronValue(a, f); err != nil {
				return 0, false, err
			}
			hi = lo
			if isRange {
				if hi, err = cronValue(b, f); err != nil {
					return 0, false, err
				}
				if hi < lo {
					return 0, false, fmt.Errorf("%s field: range %q ends before it starts", f.name, rng)
				}
			} else if hasStep {
				hi = f.max // "N/step" means from N to the end, stepping
				if f.name == "day of week" {
					hi = 6
				}
			}
		}
		for v := lo; v <= hi; v += step {
			set |= 1 << v
		}
	}
	return set, star, nil
}

func cronValue(s string, f cronField) (int, error) {
	if v, ok := f.names[strings.ToUpper(s)]; ok {
		return v, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		if f.names != nil {
			return 0, fmt.Errorf("%s field: %q is not a number or a name", f.name, s)
		}
		return 0, fmt.Errorf("%s field: %q is not a number", f.name, s)
	}
	if v < f.min || v > f.max {
		return 0, fmt.Errorf("%s field: %d is out of range %d-%d", f.name, v, f.min, f.max)
	}
	return v, nil
}

// Matches reports whether the schedule matches the minute of t on the
// clock of t's location.
func (c *CronSchedule) Matches(t time.Time) bool {
	h, mi, _ := t.Clock()
	return c.month&(1<<t.Month()) != 0 && c.dayMatches(t) && c.hour&(1<<h) != 0 && c.minute&(1<<mi) != 0
}

func (c *CronSchedule) dayMatches(t time.Time) bool {
	dom := c.dom&(1<<t.Day()) != 0
	dow := c.dow&(1<<t.Weekday()) != 0
	if c.domStar || c.dowStar {
		return dom && dow
	}
	return dom || dow
}

// nextBit returns the lowest bit of set at or above from, or -1.
func nextBit(set uint64, from int) int {
	if from > 63 {
		return -1
	}
	rest := set >> from << from
	if rest == 0 {
		return -1
	}
	return bits.TrailingZeros64(rest)
}

// prevBit returns the highest bit of set at or below from, or -1.
func prevBit(set uint64, from int) int {
	if from < 0 {
		return -1
	}
	rest := set
	if from < 63 {
		rest &= 1<<(from+1) - 1
	}
	if rest == 0 {
		return -1
	}
	return 63 - bits.LeadingZeros64(rest)
}

// civil is a wall-clock reading as a UTC time: arithmetic on it knows no
// daylight saving.
func civil(y int, mo time.Month, d, h, mi int) time.Time {
	return time.Date(y, mo, d, h, mi, 0, 0, time.UTC)
}

// instant returns the time whose reading in t's current zone period is
// the wall-clock time w (a civil time).
func instant(t, w time.Time) time.Time {
	_, off := t.Zone()
	return w.Add(-time.Duration(off) * time.Second)
}

// Next returns the first time after t, to the minute, that the schedule
// matches on the clock of t's location; the zero time if there is none
// within ten years.
//
// It walks forward a field at a time on the wall clock of the zone period
// t is in, and looks again from the next zone change whenever a jump would
// cross it: no matching minute is skipped across a daylight-saving change.
func (c *CronSchedule) Next(t time.Time) time.Time {
	loc := t.Location()
	cur := t.Truncate(time.Minute).Add(time.Minute)
	limit := t.AddDate(cronSearchYears, 0, 0)
	for cur.Before(limit) {
		y, mo, d := cur.Date()
		h, mi, _ := cur.Clock()
		var w time.Time
		switch {
		case c.month&(1<<mo) == 0:
			if m := nextBit(c.month, int(mo)+1); m > 0 {
				w = civil(y, time.Month(m), 1, 0, 0)
			} else {
				w = civil(y+1, 1, 1, 0, 0)
			}
		case !c.dayMatches(cur):
			w = civil(y, mo, d+1, 0, 0)
		case c.hour&(1<<h) == 0:
			if n := nextBit(c.hour, h+1); n >= 0 {
				w = civil(y, mo, d, n, 0)
			} else {
				w = civil(y, mo, d+1, 0, 0)
			}
		case c.minute&(1<<mi) == 0:
			if n := nextBit(c.minute, mi+1); n >= 0 {
				w = civil(y, mo, d, h, n)
			} else {
				w = civil(y, mo, d, h+1, 0)
			}
		default:
			return cur
		}
		next := instant(cur, w)
		if _, end := cur.ZoneBounds(); !end.IsZero() && !next.Before(end) {
			next = end // the clock changes first: look again from there
		}
		cur = next.In(loc)
	}
	return time.Time{}
}

// Prev returns the last time at or before t, to the minute, that the
// schedule matches on the clock of t's location; the zero time if there
// is none within ten years. It is Next run backwards.
func (c *CronSchedule) Prev(t time.Time) time.Time {
	loc := t.Location()
	cur := t.Truncate(time.Minute)
	limit := t.AddDate(-cronSearchYears, 0, 0)
	for cur.After(limit) {
		y, mo, d := cur.Date()
		h, mi, _ := cur.Clock()
		var w time.Time
		switch {
		case c.month&(1<<mo) == 0:
			if m := prevBit(c.month, int(mo)-1); m > 0 {
				w = civil(y, time.Month(m)+1, 1, 0, 0).Add(-time.Minute) // the last minute of month m
			} else {
				w = civil(y, 1, 1, 0, 0).Add(-time.Minute)
			}
		case !c.dayMatches(cur):
			w = civil(y, mo, d, 0, 0).Add(-time.Minute)
		case c.hour&(1<<h) == 0:
			if p := prevBit(c.hour, h-1); p >= 0 {
				w = civil(y, mo, d, p, 59)
			} else {
				w = civil(y, mo, d, 0, 0).Add(-time.Minute)
			}
		case c.minute&(1<<mi) == 0:
			if p := prevBit(c.minute, mi-1); p >= 0 {
				w = civil(y, mo, d, h, p)
			} else {
				w = civil(y, mo, d, h, 0).Add(-time.Minute)
			}
		default:
			return cur
		}
		prev := instant(cur, w)
		if start, _ := cur.ZoneBounds(); !start.IsZero() && prev.Before(start) {
			prev = start.Add(-time.Minute) // the clock changed since: look again from before the change
		}
		cur = prev.In(loc)
	}
	return time.Time{}
}
