// The reference for auditsync's cron schedules: robfig/cron v3 itself.
//
// Reads lines of `EXPRESSION<TAB>START<TAB>COUNT` (START in RFC 3339) and prints, for each,
// the next COUNT fire times after START as robfig/cron v3 computes them with the parser
// auditsync follows (Second | Minute | Hour | Dom | Month | Dow | Descriptor), in RFC 3339
// with the schedule's own offset; `never` when it finds none, `error: ...` when the parser
// refuses the expression. Expressions without a time-zone prefix are read in UTC, as
// auditsync reads them.
//
// crates/engine/src/cron/robfig_cases.tsv (checked by a unit test) and the expected times
// of crates/runner/tests/schedule.rs were computed with it:
//
//	apt-get install golang-go golang-github-robfig-cron-dev
//	cd xtask/robfig-oracle && GOFLAGS=-mod=mod GOPROXY=off go run . \
//	    < cases.tsv > ../../crates/engine/src/cron/robfig_cases.tsv
//
// cases.tsv leaves out Pacific/Apia from 29 December 2011: robfig/cron never returns there.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

func main() {
	parser := cron.NewParser(cron.Second | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cols := strings.Split(in.Text(), "\t")
		if len(cols) != 3 {
			continue
		}
		expr := cols[0]
		if !strings.HasPrefix(expr, "TZ=") && !strings.HasPrefix(expr, "CRON_TZ=") && !strings.HasPrefix(expr, "@every") {
			expr = "CRON_TZ=UTC " + expr
		}
		start, err := time.Parse(time.RFC3339, cols[1])
		if err != nil {
			fmt.Println("bad start:", err)
			continue
		}
		count, _ := strconv.Atoi(cols[2])
		schedule, err := parser.Parse(expr)
		if err != nil {
			fmt.Printf("%s\t%s\terror: %v\n", cols[0], cols[1], err)
			continue
		}
		var out []string
		t := start
		for i := 0; i < count; i++ {
			t = schedule.Next(t)
			if t.IsZero() {
				out = append(out, "never")
				break
			}
			out = append(out, t.Format(time.RFC3339))
		}
		fmt.Printf("%s\t%s\t%s\n", cols[0], cols[1], strings.Join(out, " "))
	}
}
