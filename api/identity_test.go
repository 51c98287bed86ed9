package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edge/api"
	"github.com/edgeorch/edge/core"
)

// A join token alone does not let anyone take over an existing node name:
// the second join must present the node password of the first.
func TestJoin_NodeIdentity(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	c := api.NewClient(e.url, e.join.String(), api.PinnedTLS(e.join.CAHash))
	first, err := c.Join(ctx, "pi-1", nodePassword)
	if err != nil {
		t.Fatal(err)
	}
	// The same machine joins again (its credentials file was lost): fine.
	again, err := c.Join(ctx, "pi-1", nodePassword)
	if err != nil {
		t.Fatalf("the node's own machine joining again: %v", err)
	}
	if e.auth.CheckMQTT("pi-1", first.MQTTPassword) || !e.auth.CheckMQTT("pi-1", again.MQTTPassword) {
		t.Fatal("a new join must replace the node's MQTT password")
	}
	// Another machine with the join token and the same name: refused, and
	// the real node keeps its credential.
	_, err = c.Join(ctx, "pi-1", "someone-else-entirely")
	if core.ErrorCode(err) != core.EUNAUTHORIZED || !strings.Contains(err.Error(), `node "pi-1" is already registered`) {
		t.Fatalf("takeover join: err = %v, want EUNAUTHORIZED naming the node", err)
	}
	if !e.auth.CheckMQTT("pi-1", again.MQTTPassword) {
		t.Fatal("a refused takeover changed the real node's credential")
	}
	if _, err := c.Join(ctx, "pi-2", "short"); core.ErrorCode(err) != core.EINVALID {
		t.Fatalf("a join with a 5-character node password: %v", err)
	}

	// The node is listed from its join on, before its agent reports.
	if n, err := e.admin.Get(ctx, core.Key{Kind: core.KindNode, Name: "pi-1"}); err != nil || n.(*core.Node).Ready() != core.ConditionUnknown {
		t.Fatalf("node after its join: %v, %v", n, err)
	}
	// Deleting the node revokes it, disconnects it, and frees the name.
	if _, err := e.admin.Delete(ctx, core.Key{Kind: core.KindNode, Name: "pi-1"}); err != nil {
		t.Fatal(err)
	}
	if e.auth.CheckMQTT("pi-1", again.MQTTPassword) {
		t.Fatal("a deleted node's MQTT credential still works")
	}
	e.mu.Lock()
	kicks := append([]string(nil), e.kicks...)
	e.mu.Unlock()
	if len(kicks) != 1 || kicks[0] != "pi-1" {
		t.Fatalf("the broker was told to disconnect %v, want [pi-1]", kicks)
	}
	if _, err := c.Join(ctx, "pi-1", "someone-else-entirely"); err != nil {
		t.Fatalf("after the node was deleted its name is free: %v", err)
	}
	if _, err := e.admin.Delete(ctx, core.Key{Kind: core.KindNode, Name: "nope"}); core.ErrorCode(err) != core.ENOTFOUND {
		t.Fatalf("deleting an unknown node: %v", err)
	}
}

// Join tokens can be listed and revoked; revocation takes effect at once.
func TestTokens_ListAndRevoke(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	tok, err := e.admin.CreateToken(ctx, api.TokenRequest{TTL: "24h", Description: "batch 2"})
	if err != nil {
		t.Fatal(err)
	}
	jt, _ := api.ParseJoinToken(tok.Token)
	list, err := e.admin.ListTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var found *core.Token
	for _, t := range list {
		if t.ID == jt.ID {
			found = t
		}
	}
	if found == nil || found.Description != "batch 2" || found.ExpiresAt == nil || found.Kind != core.TokenJoin {
		t.Fatalf("token ls = %+v, want %s with its description and expiry", list, jt.ID)
	}
	c := api.NewClient(e.url, tok.Token, api.PinnedTLS(jt.CAHash))
	if _, err := c.Join(ctx, "pi-1", nodePassword); err != nil {
		t.Fatal(err)
	}
	if err := e.admin.DeleteToken(ctx, jt.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Join(ctx, "pi-2", nodePassword); core.ErrorCode(err) != core.EUNAUTHORIZED {
		t.Fatalf("join with a revoked token: %v", err)
	}
	if err := e.admin.DeleteToken(ctx, jt.ID); core.ErrorCode(err) != core.ENOTFOUND {
		t.Fatalf("revoking it twice: %v", err)
	}
	if err := e.admin.DeleteToken(ctx, "admin"); core.ErrorCode(err) != core.EINVALID || !strings.Contains(err.Error(), "rotate") {
		t.Fatalf("removing the admin token: %v", err)
	}
}

// The admin token rotates: admin.conf gets the new one, the old one stops
// working at once.
func TestTokens_RotateAdmin(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	dir := t.TempDir()
	b := &api.Bootstrap{DataDir: dir, PKI: e.srv.PKI, Tokens: e.db}
	if _, err := b.Ensure(ctx, e.srv.Address()); err != nil {
		t.Fatal(err)
	}
	e.srv.Bootstrap = b
	cfg, err := api.LoadConfig(b.AdminConfPath())
	if err != nil {
		t.Fatal(err)
	}
	old := api.NewClient(e.url, cfg.Token, e.tls)
	if _, err := old.List(ctx, core.KindNode, "", ""); err != nil {
		t.Fatalf("admin.conf's token: %v", err)
	}
	fresh, err := old.RotateAdmin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.List(ctx, core.KindNode, "", ""); core.ErrorCode(err) != core.EUNAUTHORIZED {
		t.Fatalf("the rotated-out token still works: %v", err)
	}
	if _, err := api.NewClient(e.url, fresh, e.tls).List(ctx, core.KindNode, "", ""); err != nil {
		t.Fatalf("the new token: %v", err)
	}
	if cfg, _ := api.LoadConfig(b.AdminConfPath()); cfg.Token != fresh {
		t.Fatal("admin.conf does not hold the new token")
	}
}

// A first start that fails after the store learned the admin token but
// before anything else leaves a data dir the next start completes; a lost
// admin.conf is replaced, and the old token stops working.
func TestBootstrap_FilesWin(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	dir := t.TempDir()
	b := &api.Bootstrap{DataDir: dir, PKI: e.srv.PKI, Tokens: e.db}
	join, err := b.Ensure(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := api.LoadConfig(b.AdminConfPath())
	// Same data dir, second start: same tokens.
	b2 := &api.Bootstrap{DataDir: dir, PKI: e.srv.PKI, Tokens: e.db}
	join2, err := b2.Ensure(ctx, "127.0.0.1:0")
	if err != nil || join2 != join {
		t.Fatalf("restart changed the join token: %v %v", join2, err)
	}
	// admin.conf lost: a new admin token replaces the stored one.
	os.Remove(b.AdminConfPath())
	b3 := &api.Bootstrap{DataDir: dir, PKI: e.srv.PKI, Tokens: e.db}
	if _, err := b3.Ensure(ctx, "127.0.0.1:0"); err != nil {
		t.Fatalf("start after admin.conf was lost: %v", err)
	}
	cfg3, err := api.LoadConfig(filepath.Join(dir, "admin.conf"))
	if err != nil || cfg3.Token == cfg.Token {
		t.Fatalf("admin.conf after the restart: %+v %v", cfg3, err)
	}
	if _, err := e.db.FindToken(ctx, core.TokenAdmin, api.HashSecret(cfg.Token)); err == nil {
		t.Fatal("the lost admin token still works")
	}
	if _, err := e.db.FindToken(ctx, core.TokenAdmin, api.HashSecret(cfg3.Token)); err != nil {
		t.Fatalf("the new admin token: %v", err)
	}
}

// An agent keeps its node password across joins; a second machine with
// the same name and token, but its own data dir, is refused.
func TestMembership(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	dir := t.TempDir()
	m := &api.Membership{Token: e.join.String(), Master: e.url, Node: "pi-1", DataDir: dir}
	c1, err := m.Credentials(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !e.auth.CheckMQTT("pi-1", c1.Password) {
		t.Fatal("the joined credentials are not accepted")
	}
	// Saved credentials are reused without asking the master.
	if c, err := m.Credentials(ctx); err != nil || c.Password != c1.Password {
		t.Fatalf("second Credentials() = %+v, %v; want the saved ones", c, err)
	}
	// Rejoin (the broker refused them) keeps the node password.
	c2, err := m.Rejoin(ctx)
	if err != nil || c2.Password == c1.Password || !e.auth.CheckMQTT("pi-1", c2.Password) {
		t.Fatalf("Rejoin = %+v, %v", c2, err)
	}
	// Another machine: its own data dir, hence its own node password.
	other := &api.Membership{Token: e.join.String(), Master: e.url, Node: "pi-1", DataDir: t.TempDir()}
	if _, err := other.Credentials(ctx); core.ErrorCode(err) != core.EUNAUTHORIZED {
		t.Fatalf("a second machine under the same name: %v", err)
	}
	if !e.auth.CheckMQTT("pi-1", c2.Password) {
		t.Fatal("the refused machine changed the real node's credential")
	}
	if fi, err := os.Stat(filepath.Join(dir, "node-password")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("node-password: %v %v", fi, err)
	}
	os.WriteFile(filepath.Join(dir, "node-password"), []byte("x\n"), 0o600)
	if _, err := m.Rejoin(ctx); core.ErrorCode(err) != core.EINVALID || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("a damaged node-password: %v", err)
	}
}

// A revoked default join token stays revoked across restarts, although its
// file was in the data dir.
func TestTokens_DefaultJoinRevocationSurvivesRestart(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	dir := t.TempDir()
	b := &api.Bootstrap{DataDir: dir, PKI: e.srv.PKI, Tokens: e.db}
	join, err := b.Ensure(ctx, e.srv.Address())
	if err != nil {
		t.Fatal(err)
	}
	e.srv.Bootstrap = b
	cfg, _ := api.LoadConfig(b.AdminConfPath()) // Ensure took over the admin token too
	if err := api.NewClient(e.url, cfg.Token, e.tls).DeleteToken(ctx, api.JoinTokenID); err != nil {
		t.Fatal(err)
	}
	b2 := &api.Bootstrap{DataDir: dir, PKI: e.srv.PKI, Tokens: e.db} // the master restarts
	if _, err := b2.Ensure(ctx, e.srv.Address()); err != nil {
		t.Fatal(err)
	}
	c := api.NewClient(e.url, join.String(), api.PinnedTLS(join.CAHash))
	if _, err := c.Join(ctx, "pi-9", nodePassword); core.ErrorCode(err) != core.EUNAUTHORIZED {
		t.Fatalf("the revoked default token after a restart: %v", err)
	}
}

// A node that joined before node passwords were kept (an MQTT credential,
// no password) cannot be taken over with the join token alone; its own
// agent, which proves itself with its saved credentials, binds a password
// at its next start.
func TestJoin_NodeFromBeforeNodePasswords(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	// As the master before node passwords issued it.
	if err := e.db.SetNodeCredential(ctx, "pi-1", api.HashSecret("old-mqtt-password")); err != nil {
		t.Fatal(err)
	}
	if err := e.auth.Load(ctx); err != nil {
		t.Fatal(err)
	}
	c := api.NewClient(e.url, e.join.String(), api.PinnedTLS(e.join.CAHash))
	_, err := c.Join(ctx, "pi-1", "an-attackers-node-password")
	if core.ErrorCode(err) != core.EUNAUTHORIZED || !strings.Contains(err.Error(), "before node passwords") {
		t.Fatalf("takeover of a node from before node passwords: %v", err)
	}
	// Its own agent: saved credentials, no node-password file yet.
	dir := t.TempDir()
	b, _ := json.Marshal(api.Credentials{Master: e.url, CAHash: e.join.CAHash, Node: "pi-1", MQTTURL: "ssl://x:1", Password: "old-mqtt-password"})
	os.WriteFile(filepath.Join(dir, "credentials.json"), b, 0o600)
	m := &api.Membership{Token: e.join.String(), Master: e.url, Node: "pi-1", DataDir: dir}
	creds, err := m.Credentials(ctx)
	if err != nil {
		t.Fatalf("the node's own agent: %v", err)
	}
	if creds.Password == "old-mqtt-password" || !e.auth.CheckMQTT("pi-1", creds.Password) {
		t.Fatal("the agent did not join again to bind its node password")
	}
	if _, err := os.Stat(filepath.Join(dir, "node-password")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Join(ctx, "pi-1", "an-attackers-node-password"); core.ErrorCode(err) != core.EUNAUTHORIZED {
		t.Fatalf("takeover after the agent bound its password: %v", err)
	}
}

// A credential whose node object is gone (its registration failed, or it
// was removed by hand) can still be revoked by deleting the node.
func TestDeleteNode_CredentialWithoutObject(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	c := api.NewClient(e.url, e.join.String(), api.PinnedTLS(e.join.CAHash))
	resp, err := c.Join(ctx, "ghost", nodePassword)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.db.Update(ctx, func(tx core.Tx) error { return tx.Delete(core.Key{Kind: core.KindNode, Name: "ghost"}) }); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.Delete(ctx, core.Key{Kind: core.KindNode, Name: "ghost"}); err != nil {
		t.Fatalf("deleting a node known only by its credential: %v", err)
	}
	if e.auth.CheckMQTT("ghost", resp.MQTTPassword) {
		t.Fatal("its credential still works")
	}
	if _, err := e.admin.Delete(ctx, core.Key{Kind: core.KindNode, Name: "ghost"}); core.ErrorCode(err) != core.ENOTFOUND {
		t.Fatalf("deleting it again: %v", err)
	}
}

// Joins are rate limited (agents retry), and the cluster takes at most
// MaxNodes nodes; a node already in can always join again.
func TestJoin_RateAndNodeCap(t *testing.T) {
	e := setupWith(t, func(s *api.Server) { s.JoinRate = 1 }) // bursts of 10
	ctx := context.Background()
	e.auth.MaxNodes = 5
	c := api.NewClient(e.url, e.join.String(), api.PinnedTLS(e.join.CAHash))
	for i := 0; i < 5; i++ {
		if _, err := c.Join(ctx, fmt.Sprintf("pi-%d", i), nodePassword); err != nil {
			t.Fatalf("join %d: %v", i, err)
		}
	}
	_, err := c.Join(ctx, "pi-5", nodePassword)
	if core.ErrorCode(err) != core.EUNAVAILABLE || !strings.Contains(err.Error(), "--max-nodes") {
		t.Fatalf("a sixth node with MaxNodes 5: %v", err)
	}
	for i := 0; i < 4; i++ { // the rest of the burst: the known node rejoins
		if _, err := c.Join(ctx, "pi-0", nodePassword); err != nil {
			t.Fatalf("a known node joining again: %v", err)
		}
	}
	if _, err := c.Join(ctx, "pi-0", nodePassword); core.ErrorCode(err) != core.EUNAVAILABLE || !strings.Contains(err.Error(), "too many joins") {
		t.Fatalf("the eleventh join of a burst of 10: %v", err)
	}
	e.now = e.now.Add(2 * time.Second)
	if _, err := c.Join(ctx, "pi-0", nodePassword); err != nil {
		t.Fatalf("a join after the bucket refilled: %v", err)
	}
}

// A node's name is also its hostname label: at most 63 characters.
func TestJoin_LongNodeName(t *testing.T) {
	e := setup(t)
	c := api.NewClient(e.url, e.join.String(), api.PinnedTLS(e.join.CAHash))
	_, err := c.Join(context.Background(), strings.Repeat("n", 64), nodePassword)
	if core.ErrorCode(err) != core.EINVALID || !strings.Contains(err.Error(), "at most 63") {
		t.Fatalf("a 64-character node name: %v", err)
	}
}

// An agent newer than its master (here: a protocol it does not speak) is
// refused at join, saying which side to upgrade; the node is not made.
func TestJoin_VersionSkew(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	cl := api.NewClient(e.url, e.join.String(), api.PinnedTLS(e.join.CAHash))
	_, err := cl.JoinWith(ctx, api.JoinRequest{Node: "pi-9", NodePassword: strings.Repeat("p", 32), Version: "v9.0.0", Protocol: core.ProtocolVersion + 1})
	if core.ErrorCode(err) != core.EINVALID || !strings.Contains(core.ErrorMessage(err), "upgrade the master first") {
		t.Fatalf("join of a newer agent: %v", err)
	}
	if _, err := e.db.Get(ctx, core.Key{Kind: core.KindNode, Name: "pi-9"}); core.ErrorCode(err) != core.ENOTFOUND {
		t.Fatalf("the refused node was registered: %v", err)
	}
	if _, err := cl.JoinWith(ctx, api.JoinRequest{Node: "pi-9", NodePassword: strings.Repeat("p", 32), Version: "v0.1.0", Protocol: core.ProtocolVersion}); err != nil {
		t.Fatalf("join of a current agent: %v", err)
	}
}
