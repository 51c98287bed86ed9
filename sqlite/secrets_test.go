package sqlite_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/sqlite"
)

// Secrets are encrypted in the database file; the key beside it reads
// them back; without it (or with another) opening says why.
func TestDB_SecretsEncryptedAtRest(t *testing.T) {
	dir := t.TempDir()
	path, keyPath := filepath.Join(dir, "state.db"), filepath.Join(dir, "secrets.key")
	key, err := sqlite.LoadOrCreateKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(keyPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st.Mode(), err)
	}
	db := sqlite.NewDB(path)
	db.SecretsKey = key
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	o, _ := core.NewObject(core.KindSecret)
	s := o.(*core.Secret)
	s.Metadata.Name, s.Metadata.Namespace = "mqtt", "default"
	s.Data = map[string][]byte{"password": []byte("hunter2-very-secret")}
	cm := &core.ConfigMap{TypeMeta: core.TypeMeta{APIVersion: "v1", Kind: core.KindConfigMap},
		Metadata: core.ObjectMeta{Name: "conf", Namespace: "default"}, Data: map[string]string{"plain": "visible-config"}}
	create(t, db, s, cm)
	db.Close()

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	wal, _ := os.ReadFile(path + "-wal")
	raw = append(raw, wal...)
	if bytes.Contains(raw, []byte("hunter2")) || bytes.Contains(raw, []byte("aHVudGVyMi")) { // plain or base64
		t.Fatal("the secret's value is in the database file")
	}
	if !bytes.Contains(raw, []byte("visible-config")) {
		t.Fatal("the test cannot see plain rows: it proves nothing")
	}

	again := sqlite.NewDB(path)
	again.SecretsKey = key
	if err := again.Open(); err != nil {
		t.Fatal(err)
	}
	got, err := again.Get(context.Background(), core.Key{Kind: core.KindSecret, Namespace: "default", Name: "mqtt"})
	if err != nil || string(got.(*core.Secret).Data["password"]) != "hunter2-very-secret" {
		t.Fatalf("read back: %v", err)
	}
	again.Close()

	other := sqlite.NewDB(path)
	other.SecretsKey = bytes.Repeat([]byte{1}, 32)
	if err := other.Open(); err == nil || !strings.Contains(err.Error(), "Secret default/mqtt") {
		other.Close()
		t.Fatalf("opening with another key: %v", err)
	}
	if _, err := sqlite.LoadOrCreateKey(path); err == nil { // not 32 bytes
		t.Fatal("a file of the wrong size accepted as a key")
	}
}
