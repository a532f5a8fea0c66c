package sessions

import (
	"context"
	"testing"

	"github.com/google/uuid"
)

// ListByIdentity pages one identity's sessions, each once, with devices and without the
// identity, and lists nobody else's.
func TestListByIdentity(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ctx := context.Background()
	alice, bob := b.newIdentity(t, "alice@example.com"), b.newIdentity(t, "bob@example.com")
	var want []uuid.UUID
	for range 5 {
		s, _ := b.issue(t, alice)
		want = append(want, s.ID)
	}
	b.issue(t, bob)
	var got []uuid.UUID
	var after *Cursor
	for pages := 0; ; pages++ {
		list, next, err := b.mgr.ListByIdentity(ctx, alice.ID, 2, after)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range list {
			if s.IdentityID != alice.ID || s.Identity != nil || s.Devices == nil || !s.Active {
				t.Fatalf("listed %+v", s)
			}
			got = append(got, s.ID)
		}
		if next == nil {
			break
		}
		if pages > 3 {
			t.Fatal("too many pages")
		}
		after = next
	}
	// Sessions issued within one microsecond tie on created_at and go by id: compare as sets.
	seen := map[uuid.UUID]bool{}
	for _, id := range got {
		if seen[id] {
			t.Fatalf("%s listed twice", id)
		}
		seen[id] = true
	}
	for _, id := range want {
		if !seen[id] {
			t.Fatalf("listed %v, want %v", got, want)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("listed %d sessions, want %d", len(got), len(want))
	}
	if list, next, err := b.mgr.ListByIdentity(ctx, uuid.New(), 10, nil); err != nil || len(list) != 0 || next != nil {
		t.Fatalf("unknown identity: %d sessions, %v", len(list), err)
	}
}
