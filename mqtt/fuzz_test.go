package mqtt

import (
	"encoding/json"
	"testing"

	"github.com/edgeorch/edge/core"
)

// Every decoder of what crosses the broker: never panics, refuses with an
// EINVALID error, and what it accepts is within the bounds it promises.

func FuzzDecodeReport(f *testing.F) {
	for _, s := range []string{
		`{"node":"n1","labels":{"kubernetes.io/hostname":"n1","zone":"shed"},"status":{"capacity":{"cpu":"4","memory":"4Gi","pods":"110"}},"pods":[{"namespace":"default","name":"p","uid":"u","status":{"phase":"Running"}}],"desiredHash":"abc"}`,
		`{"node":"n2"}`, `{"labels":{"kubernetes.io/hostname":"n2"}}`, `{"status":{"capacity":{"cpu":"` + "99999999999999999999999999999999999999999999999999999999999999999" + `"}}}`,
		`{"pods":null}`, `[]`, `null`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		rep, err := decodeReport("n1", []byte(payload))
		if err != nil {
			if core.ErrorCode(err) != core.EINVALID {
				t.Fatalf("refusal with code %s: %v", core.ErrorCode(err), err)
			}
			return
		}
		if rep.Node != "n1" {
			t.Fatalf("accepted a report for %q on n1's topic", rep.Node)
		}
		if h, ok := rep.Labels[core.LabelHostname]; ok && h != "n1" {
			t.Fatalf("accepted hostname label %q", h)
		}
		if len(rep.Pods) > core.MaxPodsPerReport || len(rep.Status.Images) > core.MaxImagesPerReport {
			t.Fatal("accepted an oversized report")
		}
		for _, q := range rep.Status.Capacity {
			if _, err := q.Value(); err != nil {
				t.Fatalf("accepted capacity %q: %v", q, err)
			}
		}
	})
}

func FuzzDecodeEvents(f *testing.F) {
	f.Add(`[{"id":1,"namespace":"default","pod":"p","uid":"u","type":"Normal","reason":"Started","message":"Started container c"}]`)
	f.Add(`[]`)
	f.Add(`{}`)
	f.Fuzz(func(t *testing.T, payload string) {
		events, err := decodeEvents([]byte(payload))
		if err != nil {
			if core.ErrorCode(err) != core.EINVALID {
				t.Fatalf("refusal with code %s: %v", core.ErrorCode(err), err)
			}
			return
		}
		if len(events) > core.MaxEventsPerMessage {
			t.Fatalf("accepted %d events", len(events))
		}
	})
}

func FuzzDecodeDesired(f *testing.F) {
	ds := core.DesiredState{Node: "n1", Hash: "h", Pods: []*core.Pod{{Metadata: core.ObjectMeta{Name: "p", UID: "u"}}}, Prefetch: []string{"busybox"}}
	b, _ := json.Marshal(ds)
	f.Add(string(b))
	f.Add(`{"node":"n2","pods":[]}`)
	f.Add(`{"pods":[null]}`)
	f.Fuzz(func(t *testing.T, payload string) {
		ds, err := decodeDesired("n1", []byte(payload))
		if err != nil {
			return
		}
		if ds.Node != "" && ds.Node != "n1" {
			t.Fatalf("accepted a desired state for %q", ds.Node)
		}
		for _, p := range ds.Pods {
			if p == nil {
				t.Fatal("accepted a null pod")
			}
		}
	})
}

func FuzzDecodeCommand(f *testing.F) {
	f.Add(`{"type":"logs","id":"abc","logs":{"namespace":"default","pod":"p","tail":-1,"follow":true}}`)
	f.Add(`{"type":"cancel","id":"abc"}`)
	f.Add(`{"type":"rm -rf","id":"x"}`)
	f.Fuzz(func(t *testing.T, payload string) {
		cmd, err := decodeCommand([]byte(payload))
		if err != nil {
			return
		}
		if cmd.ID == "" || len(cmd.ID) > 64 || (cmd.Type != "logs" && cmd.Type != "cancel" && cmd.Type != "ping") {
			t.Fatalf("accepted %+v", cmd)
		}
	})
}

func FuzzDecodeChunk(f *testing.F) {
	f.Add(`{"seq":0,"data":"aGVsbG8K"}`)
	f.Add(`{"seq":3,"eof":true,"error":"gone","code":"not_found"}`)
	f.Add(`{"seq":-1}`)
	f.Fuzz(func(t *testing.T, payload string) {
		c, err := decodeChunk([]byte(payload))
		if err != nil {
			return
		}
		if c.Seq < 0 || len(c.Data) > maxChunkData {
			t.Fatalf("accepted %+v", c)
		}
	})
}
