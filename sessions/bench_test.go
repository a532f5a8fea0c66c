package sessions

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkWhoami measures the whoami handler against a real database, many clients at once,
// without the HTTP server in front: the part of the hot path this package owns. Run with
//
//	go test -run '^$' -bench Whoami -benchmem -cpu 2 ./sessions/
func BenchmarkWhoami(b *testing.B) {
	bundle := setup(b, Config{})
	_, token := bundle.issue(b, bundle.newIdentity(b, "bench@example.com"))
	b.SetParallelism(32) // 64 clients on 2 cores
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := httptest.NewRequest(http.MethodGet, "/sessions/whoami", nil)
			r.Header.Set("X-Session-Token", token)
			w := httptest.NewRecorder()
			bundle.public.ServeHTTP(w, r)
			if w.Code != http.StatusOK {
				b.Errorf("status %d: %s", w.Code, w.Body)
				return
			}
		}
	})
}
