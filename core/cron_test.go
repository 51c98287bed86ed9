package core_test

import (
	"sort"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the DST cases must not depend on the machine's zoneinfo

	"github.com/edgeorch/edge/core"
)

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestParseCron_Errors(t *testing.T) {
	for spec, want := range map[string]string{
		"":                      "empty schedule",
		"* * * *":               "expected 5 fields",
		"0 * * * * *":           "expected 5 fields",
		"60 * * * *":            "minute field: 60 is out of range 0-59",
		"* 24 * * *":            "hour field: 24 is out of range 0-23",
		"* * 0 * *":             "day of month field: 0 is out of range 1-31",
		"* * 32 * *":            "day of month field: 32 is out of range 1-31",
		"* * * 13 *":            "month field: 13 is out of range 1-12",
		"* * * * 8":             "day of week field: 8 is out of range 0-7",
		"5-1 * * * *":           `minute field: range "5-1" ends before it starts`,
		"*/0 * * * *":           `minute field: step "0" is not a positive number`,
		"*/x * * * *":           `minute field: step "x" is not a positive number`,
		"a * * * *":             `minute field: "a" is not a number`,
		"* * * FOO *":           `month field: "FOO" is not a number or a name`,
		"* * * * MON-FOO":       `day of week field: "FOO" is not a number or a name`,
		"1,,2 * * * *":          "minute field: empty value",
		"@every 1h":             "unknown descriptor",
		"@reboot":               "unknown descriptor",
		"TZ=UTC 0 * * * *":      "set spec.timeZone instead",
		"CRON_TZ=UTC 0 * * * *": "set spec.timeZone instead",
		"0 0 30 2 *":            "never matches a date",
		"0 0 31 4,6,9,11 *":     "never matches a date",
	} {
		_, err := core.ParseCron(spec)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseCron(%q) = %v, want an error containing %q", spec, err, want)
		}
	}
}

// 2026-01-01 is a Thursday.
func TestCronSchedule_NextPrevUTC(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse("2006-01-02 15:04", s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		spec, from string
		next       []string // successive runs after from
		prev       string   // last run at or before from
	}{
		{"* * * * *", "2026-01-01 10:00", []string{"2026-01-01 10:01", "2026-01-01 10:02"}, "2026-01-01 10:00"},
		{"*/15 * * * *", "2026-01-01 10:01", []string{"2026-01-01 10:15", "2026-01-01 10:30", "2026-01-01 10:45", "2026-01-01 11:00"}, "2026-01-01 10:00"},
		{"5/20 * * * *", "2026-01-01 10:00", []string{"2026-01-01 10:05", "2026-01-01 10:25", "2026-01-01 10:45", "2026-01-01 11:05"}, "2026-01-01 09:45"},
		{"1,2,5-7 * * * *", "2026-01-01 10:02", []string{"2026-01-01 10:05", "2026-01-01 10:06", "2026-01-01 10:07", "2026-01-01 11:01"}, "2026-01-01 10:02"},
		{"0 9-17/4 * * *", "2026-01-01 09:00", []string{"2026-01-01 13:00", "2026-01-01 17:00", "2026-01-02 09:00"}, "2026-01-01 09:00"},
		{"30 6 * * MON-FRI", "2026-01-02 07:00", []string{"2026-01-05 06:30", "2026-01-06 06:30"}, "2026-01-02 06:30"},
		{"30 6 * * mon-fri", "2026-01-04 12:00", []string{"2026-01-05 06:30"}, "2026-01-02 06:30"},
		{"0 0 1 JAN,jul *", "2026-03-10 00:00", []string{"2026-07-01 00:00", "2027-01-01 00:00"}, "2026-01-01 00:00"},
		{"0 0 1-3 FEB-APR/2 *", "2026-01-01 00:00", []string{"2026-02-01 00:00", "2026-02-02 00:00", "2026-02-03 00:00", "2026-04-01 00:00"}, "2025-04-03 00:00"},
		// Both day fields restricted: either matches (Fridays and the 13th).
		{"0 0 13 * 5", "2026-01-01 00:00", []string{"2026-01-02 00:00", "2026-01-09 00:00", "2026-01-13 00:00", "2026-01-16 00:00"}, "2025-12-26 00:00"},
		// A stepped day of month is not "*": still either (Kubernetes' rule).
		{"0 0 */10 * 1", "2026-01-01 00:00", []string{"2026-01-05 00:00", "2026-01-11 00:00", "2026-01-12 00:00", "2026-01-19 00:00", "2026-01-21 00:00"}, "2026-01-01 00:00"},
		// One of them "*": both must match.
		{"0 0 * * 1", "2026-01-01 00:00", []string{"2026-01-05 00:00", "2026-01-12 00:00"}, "2025-12-29 00:00"},
		{"0 0 1 * *", "2026-01-01 00:01", []string{"2026-02-01 00:00", "2026-03-01 00:00"}, "2026-01-01 00:00"},
		{"0 0 ? * 1", "2026-01-01 00:00", []string{"2026-01-05 00:00"}, "2025-12-29 00:00"},
		{"0 0 * * 7", "2026-01-01 00:00", []string{"2026-01-04 00:00", "2026-01-11 00:00"}, "2025-12-28 00:00"},
		{"0 0 * * 0", "2026-01-01 00:00", []string{"2026-01-04 00:00"}, "2025-12-28 00:00"},
		{"0 0 * * 5-7", "2026-01-01 00:00", []string{"2026-01-02 00:00", "2026-01-03 00:00", "2026-01-04 00:00", "2026-01-09 00:00"}, "2025-12-28 00:00"},
		{"0 0 29 2 *", "2026-01-01 00:00", []string{"2028-02-29 00:00", "2032-02-29 00:00"}, "2024-02-29 00:00"},
		{"59 23 31 12 *", "2026-01-01 00:00", []string{"2026-12-31 23:59"}, "2025-12-31 23:59"},
		{"@hourly", "2026-01-01 10:30", []string{"2026-01-01 11:00", "2026-01-01 12:00"}, "2026-01-01 10:00"},
		{"@daily", "2026-01-01 10:30", []string{"2026-01-02 00:00"}, "2026-01-01 00:00"},
		{"@midnight", "2026-01-01 10:30", []string{"2026-01-02 00:00"}, "2026-01-01 00:00"},
		{"@weekly", "2026-01-01 10:30", []string{"2026-01-04 00:00", "2026-01-11 00:00"}, "2025-12-28 00:00"},
		{"@monthly", "2026-01-01 10:30", []string{"2026-02-01 00:00"}, "2026-01-01 00:00"},
		{"@yearly", "2026-01-01 10:30", []string{"2027-01-01 00:00"}, "2026-01-01 00:00"},
		{"@ANNUALLY", "2026-01-01 10:30", []string{"2027-01-01 00:00"}, "2026-01-01 00:00"},
	} {
		s, err := core.ParseCron(tc.spec)
		if err != nil {
			t.Errorf("%q: %v", tc.spec, err)
			continue
		}
		cur := at(tc.from)
		for _, want := range tc.next {
			got := s.Next(cur)
			if !got.Equal(at(want)) {
				t.Errorf("%q: Next(%s) = %s, want %s", tc.spec, cur.Format(time.DateTime), got.Format(time.DateTime), want)
				break
			}
			cur = got
		}
		if got := s.Prev(at(tc.from)); !got.Equal(at(tc.prev)) {
			t.Errorf("%q: Prev(%s) = %s, want %s", tc.spec, tc.from, got.Format(time.DateTime), tc.prev)
		}
		// Seconds past the minute: Next is still the next minute, Prev this one.
		if got := s.Prev(at(tc.from).Add(30 * time.Second)); !got.Equal(at(tc.prev)) {
			t.Errorf("%q: Prev(%s:30) = %s, want %s", tc.spec, tc.from, got.Format(time.DateTime), tc.prev)
		}
	}
}

// New York, 2026: clocks go 02:00 EST -> 03:00 EDT on March 8 and
// 02:00 EDT -> 01:00 EST on November 1. A schedule matches the wall
// clock's readings, as in Kubernetes: 02:30 does not occur on March 8,
// 01:30 occurs twice on November 1.
func TestCronSchedule_DaylightSaving(t *testing.T) {
	ny := mustZone(t, "America/New_York")
	utc := func(s string) time.Time {
		v, err := time.Parse("2006-01-02 15:04", s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		name, spec, from string // from in UTC
		want             []string
	}{
		{"a time in the skipped hour does not occur", "30 2 * * *", "2026-03-07 08:00", // 03:00 EST on the 7th
			[]string{"2026-03-09 06:30"}}, // 02:30 EDT on the 9th
		{"the day before it does", "30 2 * * *", "2026-03-06 12:00",
			[]string{"2026-03-07 07:30", "2026-03-09 06:30"}},
		{"hourly skips the missing hour", "0 * * * *", "2026-03-08 05:30", // 00:30 EST
			[]string{"2026-03-08 06:00", "2026-03-08 07:00"}}, // 01:00 EST, 03:00 EDT
		{"hourly across the spring change", "0 * * * *", "2026-03-08 06:30", // 01:30 EST
			[]string{"2026-03-08 07:00", "2026-03-08 08:00"}}, // 03:00 EDT, 04:00 EDT
		{"a time in the repeated hour occurs twice", "30 1 * * *", "2026-11-01 04:00", // 00:00 EDT
			[]string{"2026-11-01 05:30", "2026-11-01 06:30", "2026-11-02 06:30"}},
		{"hourly across the autumn change", "0 * * * *", "2026-11-01 04:30", // 00:30 EDT
			[]string{"2026-11-01 05:00", "2026-11-01 06:00", "2026-11-01 07:00"}}, // 01:00 EDT, 01:00 EST, 02:00 EST
		{"a daily run at midnight keeps to local midnight", "0 0 * * *", "2026-03-07 12:00",
			[]string{"2026-03-08 05:00", "2026-03-09 04:00"}},
		{"every 20 minutes runs on through the change", "*/20 * * * *", "2026-11-01 05:50", // 01:50 EDT
			[]string{"2026-11-01 06:00", "2026-11-01 06:20"}}, // 01:00 EST, 01:20 EST
	} {
		s, err := core.ParseCron(tc.spec)
		if err != nil {
			t.Fatal(err)
		}
		cur := utc(tc.from).In(ny)
		for _, w := range tc.want {
			got := s.Next(cur)
			if !got.Equal(utc(w)) {
				t.Errorf("%s: %q Next(%s) = %s, want %s", tc.name, tc.spec, cur, got, utc(w).In(ny))
				break
			}
			if prev := s.Prev(got); !prev.Equal(got) {
				t.Errorf("%s: %q Prev(%s) = %s, want itself", tc.name, tc.spec, got, prev)
			}
			if s.Matches(cur) {
				if prev := s.Prev(got.Add(-time.Minute)); !prev.Equal(cur) {
					t.Errorf("%s: %q Prev(%s) = %s, want the run before, %s", tc.name, tc.spec, got.Add(-time.Minute), prev, cur)
				}
			}
			cur = got
		}
	}
}

// Next and Prev agree with a minute-by-minute scan of the wall clock
// around every zone change of 2026 in zones with daylight saving, an
// hour's, half an hour's (Lord Howe) and at midnight (Havana, Santiago).
func TestCronSchedule_AgreesWithScan(t *testing.T) {
	specs := []string{"* * * * *", "*/7 * * * *", "30 2 * * *", "30 1 * * *", "0 * * * *", "15 0-3 * * *",
		"0 0 * * *", "59 23 * * *", "45 1,2 * * *", "0 0 * * 0", "10 2 1-10 * 0"}
	var scheds []*core.CronSchedule
	for _, s := range specs {
		c, err := core.ParseCron(s)
		if err != nil {
			t.Fatal(err)
		}
		scheds = append(scheds, c)
	}
	for _, zone := range []string{"UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "America/Havana", "America/Santiago"} {
		loc := mustZone(t, zone)
		var changes []time.Time
		for at := time.Date(2026, 1, 1, 0, 0, 0, 0, loc); at.Year() == 2026; {
			_, end := at.ZoneBounds()
			if end.IsZero() || end.Year() != 2026 {
				break
			}
			changes = append(changes, end)
			at = end
		}
		if zone != "UTC" && len(changes) != 2 {
			t.Fatalf("%s: %d zone changes in 2026, want 2", zone, len(changes))
		}
		if zone == "UTC" {
			changes = []time.Time{time.Date(2026, 6, 1, 0, 0, 0, 0, loc)}
		}
		for _, change := range changes {
			from, to := change.Add(-9*24*time.Hour), change.Add(9*24*time.Hour)
			for i, s := range scheds {
				var hits []time.Time // every matching minute in [from, to)
				for m := from; m.Before(to); m = m.Add(time.Minute) {
					if s.Matches(m.In(loc)) {
						hits = append(hits, m)
					}
				}
				for at := change.Add(-2 * 24 * time.Hour); at.Before(change.Add(2 * 24 * time.Hour)); at = at.Add(13*time.Minute + 7*time.Second) {
					at := at.In(loc)
					j := sort.Search(len(hits), func(j int) bool { return hits[j].After(at) })
					if j < len(hits) {
						if got := s.Next(at); !got.Equal(hits[j]) {
							t.Fatalf("%s %q: Next(%s) = %s, the scan says %s", zone, specs[i], at, got, hits[j].In(loc))
						}
					}
					if j > 0 {
						if got := s.Prev(at); !got.Equal(hits[j-1]) {
							t.Fatalf("%s %q: Prev(%s) = %s, the scan says %s", zone, specs[i], at, got, hits[j-1].In(loc))
						}
					}
				}
			}
		}
	}
}
