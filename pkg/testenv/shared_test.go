package testenv

import "testing"

func TestNamespacePrefix(t *testing.T) {
	for test, want := range map[string]string{
		"TestNamespace/a":       "testnamespace-a-",
		"TestX/with_Spaces and": "testx-with-spaces-and-",
		"Test__odd--//names_":   "test-odd-names-",
	} {
		if got := namespacePrefix(test); got != want {
			t.Errorf("namespacePrefix(%q) = %q, want %q", test, got, want)
		}
	}
	long := namespacePrefix("TestAVeryLongNameThatGoesOnAndOnForMoreThanFortyCharacters/sub")
	if len(long) > 41 {
		t.Errorf("namespacePrefix of a long name is %d characters: %q", len(long), long)
	}
}
