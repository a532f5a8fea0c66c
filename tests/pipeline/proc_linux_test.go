package pipeline

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// tcpPortOwners maps the local port of every TCP socket the given processes hold to the pid
// holding it. The receiver sees a request's remote port; this says which worker sent it, so a
// test can kill a worker that certainly has deliveries in flight.
func tcpPortOwners(pids []int) (map[int]int, error) {
	inodes := map[string]int{} // socket inode -> pid
	for _, pid := range pids {
		dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
		fds, err := os.ReadDir(dir)
		if err != nil {
			return nil, err
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(dir, fd.Name()))
			if err != nil {
				continue // closed meanwhile
			}
			if inode, ok := strings.CutPrefix(link, "socket:["); ok {
				inodes[strings.TrimSuffix(inode, "]")] = pid
			}
		}
	}
	owners := map[int]int{}
	for _, table := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 {
				continue
			}
			pid, ok := inodes[fields[9]]
			if !ok {
				continue
			}
			_, hexPort, ok := strings.Cut(fields[1], ":")
			if !ok {
				continue
			}
			port, err := strconv.ParseUint(hexPort, 16, 16)
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("%s: bad local address %q", table, fields[1])
			}
			owners[int(port)] = pid
		}
		f.Close()
	}
	return owners, nil
}
