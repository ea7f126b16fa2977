package pii

// ibanLengths is the total IBAN length per country from the SWIFT IBAN
// registry (ISO 13616). A code missing here is still accepted with any
// length from 15 to 34, so a country added to the registry later is
// redacted rather than leaked.
var ibanLengths = map[string]int{
	"AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
	"BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24,
	"DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
	"FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
	"GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
	"JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
	"LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27,
	"MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28,
	"PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
	"SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
	"TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}

const (
	ibanMin = 15
	ibanMax = 34
)

// findIBANs looks for an upper-case country code and two check digits on a
// word boundary, then for the longest run of up to 34 upper-case letters and
// digits (single spaces allowed between them, as IBANs are printed in
// groups of four) that passes the ISO 7064 mod-97 check. Lower-case IBANs
// are not recognised: they almost never occur, and accepting them would
// make ordinary words candidates.
func findIBANs(s string, dst []span) []span {
	// ends[k] is the byte offset just past the (k+1)th IBAN character.
	var ends [ibanMax]int
	for i := 0; i+4 <= len(s); i++ {
		if !isUpper(s[i]) || !isUpper(s[i+1]) || !isDigit(s[i+2]) || !isDigit(s[i+3]) {
			continue
		}
		if i > 0 && isWord(s[i-1]) {
			continue
		}
		n, j := 0, i
		for n < ibanMax && j < len(s) {
			c := s[j]
			if isUpper(c) || isDigit(c) {
				ends[n] = j + 1
				n++
				j++
				continue
			}
			if c == ' ' && n >= 4 && j+1 < len(s) && (isUpper(s[j+1]) || isDigit(s[j+1])) {
				j++
				continue
			}
			break
		}
		want := ibanLengths[s[i:i+2]]
		for k := n; k >= ibanMin; k-- {
			end := ends[k-1]
			if (want != 0 && k != want) || (end < len(s) && isAlnum(s[end])) {
				continue
			}
			if ibanValid(s[i:end]) {
				dst = append(dst, span{i, end, replIBAN})
				i = end - 1
				break
			}
		}
	}
	return dst
}

// ibanValid applies ISO 13616 / ISO 7064 MOD 97-10 to s (spaces ignored):
// move the first four characters to the end, turn letters into 10..35, and
// the resulting number must be 1 modulo 97. Check digits 00, 01 and 99 are
// never issued.
func ibanValid(s string) bool {
	if cd := (s[2]-'0')*10 + (s[3] - '0'); cd < 2 || cd > 98 {
		return false
	}
	rem := 0
	add := func(c byte) {
		switch {
		case isDigit(c):
			rem = (rem*10 + int(c-'0')) % 97
		case isUpper(c):
			rem = (rem*100 + int(c-'A') + 10) % 97
		}
	}
	for i := 4; i < len(s); i++ {
		add(s[i])
	}
	for i := range 4 {
		add(s[i])
	}
	return rem == 1
}
