package pii

// findSSNs finds US social security numbers written AAA-GG-SSSS on number
// boundaries, skipping the numbers the SSA never issues: area 000, 666 or
// 900–999, group 00, serial 0000. Undashed nine-digit runs are not
// recognised; they are indistinguishable from any other id.
func findSSNs(s string, dst []span) []span {
	for i := 0; i+11 <= len(s); i++ {
		if !isDigit(s[i]) || (i > 0 && isDigit(s[i-1])) {
			continue
		}
		c := s[i : i+11]
		if !isDigit(c[1]) || !isDigit(c[2]) || c[3] != '-' ||
			!isDigit(c[4]) || !isDigit(c[5]) || c[6] != '-' ||
			!isDigit(c[7]) || !isDigit(c[8]) || !isDigit(c[9]) || !isDigit(c[10]) {
			continue
		}
		if !numberStartOK(s, i) || !numberEndOK(s, i+11) {
			continue
		}
		if !ssnIssuable(c) {
			continue
		}
		dst = append(dst, span{i, i + 11, replSSN})
		i += 10
	}
	return dst
}

func ssnIssuable(c string) bool {
	area := c[0:3]
	if area == "000" || area == "666" || area[0] == '9' {
		return false
	}
	return c[4:6] != "00" && c[7:11] != "0000"
}
