package core

import (
	"fmt"
	"strings"

	"github.com/latchhq/latch/schemas"
)

// UI is Kratos' ui container: where to submit, how, the form nodes and flow-level messages.
type UI struct {
	Action   string            `json:"action"`
	Method   string            `json:"method"`
	Nodes    []Node            `json:"nodes"`
	Messages []schemas.Message `json:"messages,omitempty"`
}

// Node is one form element. Latch only renders input nodes (password method, traits).
type Node struct {
	Type       string            `json:"type"`
	Group      string            `json:"group"`
	Attributes InputAttributes   `json:"attributes"`
	Messages   []schemas.Message `json:"messages"`
	Meta       Meta              `json:"meta"`
}

// InputAttributes are the attributes of an input node.
type InputAttributes struct {
	Name         string `json:"name"`
	Type         string `json:"type"`
	Value        any    `json:"value,omitempty"`
	Required     bool   `json:"required,omitempty"`
	Autocomplete string `json:"autocomplete,omitempty"`
	Pattern      string `json:"pattern,omitempty"`
	MaxLength    int    `json:"maxlength,omitempty"`
	Disabled     bool   `json:"disabled"`
	NodeType     string `json:"node_type"`
}

// Meta carries the node's label.
type Meta struct {
	Label *schemas.Message `json:"label,omitempty"`
}

// Node groups and UI text ids used by the password method (Kratos' text/id.go).
const (
	groupDefault  = "default"
	groupPassword = "password"
	groupProfile  = "profile"

	textSignIn        = 1010001
	textReauth        = 1010003
	textSignUp        = 1040001
	textSave          = 1070003
	textPasswordLabel = 1070001
	textFieldLabel    = 1070002
	textIDLabel       = 1070004
	textSettingsSaved = 1050001
)

func info(id int64, text string) *schemas.Message {
	return &schemas.Message{ID: id, Text: text, Type: "info"}
}

func input(group, name, typ string) Node {
	return Node{Type: "input", Group: group, Messages: []schemas.Message{},
		Attributes: InputAttributes{Name: name, Type: typ, NodeType: "input"}}
}

func csrfNode() Node {
	n := input(groupDefault, "csrf_token", "hidden")
	n.Attributes.Required = true
	n.Attributes.Value = ""
	return n
}

func submitNode(group, method string, label *schemas.Message) Node {
	n := input(group, "method", "submit")
	n.Attributes.Value = method
	n.Meta.Label = label
	return n
}

func passwordNode(autocomplete string) Node {
	n := input(groupPassword, "password", "password")
	n.Attributes.Required = true
	n.Attributes.Autocomplete = autocomplete
	n.Meta.Label = info(textPasswordLabel, "Password")
	return n
}

// traitNodes renders one input per schema field, with values from traits when given.
func traitNodes(group string, fields []schemas.Field, values map[string]any) []Node {
	nodes := make([]Node, 0, len(fields))
	for _, f := range fields {
		n := input(group, f.Name, f.InputType)
		n.Attributes.Required = f.Required
		n.Attributes.Autocomplete = f.Autocomplete
		n.Attributes.Pattern = f.Pattern
		n.Attributes.MaxLength = f.MaxLength
		if f.Title != "" {
			n.Meta.Label = info(textFieldLabel, f.Title)
		}
		if v, ok := lookup(values, strings.TrimPrefix(f.Name, "traits.")); ok {
			n.Attributes.Value = v
		}
		nodes = append(nodes, n)
	}
	return nodes
}

// lookup walks a dotted path through nested JSON objects.
func lookup(m map[string]any, path string) (any, bool) {
	var cur any = m
	for _, part := range strings.Split(path, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[part]; !ok {
			return nil, false
		}
	}
	return cur, cur != nil
}

// registrationUI is the registration form of the password method.
func registrationUI(action string, fields []schemas.Field) UI {
	nodes := []Node{csrfNode()}
	nodes = append(nodes, traitNodes(groupDefault, fields, nil)...)
	nodes = append(nodes, passwordNode("new-password"), submitNode(groupPassword, "password", info(textSignUp, "Sign up")))
	return UI{Action: action, Method: "POST", Nodes: nodes}
}

// loginUI is the login form of the password method.
func loginUI(action, identifierLabel string) UI {
	id := input(groupDefault, "identifier", "text")
	id.Attributes.Required = true
	id.Attributes.Autocomplete = "username"
	id.Meta.Label = info(textIDLabel, identifierLabel)
	return UI{Action: action, Method: "POST", Nodes: []Node{
		csrfNode(), id, passwordNode("current-password"), submitNode(groupPassword, "password", info(textSignIn, "Sign in")),
	}}
}

// settingsUI is the settings form: profile (traits) and password.
func settingsUI(action string, fields []schemas.Field, traits map[string]any) UI {
	nodes := []Node{csrfNode()}
	nodes = append(nodes, traitNodes(groupProfile, fields, traits)...)
	nodes = append(nodes, submitNode(groupProfile, "profile", info(textSave, "Save")))
	nodes = append(nodes, passwordNode("new-password"), submitNode(groupPassword, "password", info(textSave, "Save")))
	return UI{Action: action, Method: "POST", Nodes: nodes}
}

// resetMessages clears every message before a submit's outcome is rendered.
func (u *UI) resetMessages() {
	u.Messages = nil
	for n := range u.Nodes {
		u.Nodes[n].Messages = []schemas.Message{}
	}
}

// addMessage attaches a message to the node called name, or to the flow when name is "" or no
// such node exists and create is false. With create, a missing node is added as a text input,
// which is what Kratos does for messages a webhook sends about fields the form lacks.
func (u *UI) addMessage(name string, m schemas.Message) {
	if name != "" {
		for n := range u.Nodes {
			if u.Nodes[n].Attributes.Name == name {
				u.Nodes[n].Messages = append(u.Nodes[n].Messages, m)
				return
			}
		}
		n := input(groupDefault, name, "text")
		n.Messages = append(n.Messages, m)
		u.Nodes = append(u.Nodes, n)
		return
	}
	u.Messages = append(u.Messages, m)
}

// setValues restores submitted values into the form so the user does not retype them. Passwords
// are never echoed back.
func (u *UI) setValues(values map[string]any) {
	for n := range u.Nodes {
		a := &u.Nodes[n].Attributes
		if a.Type == "password" || a.Type == "submit" || a.Name == "csrf_token" {
			continue
		}
		if v, ok := values[a.Name]; ok {
			a.Value = v
		}
	}
}

// flattenTraits turns {"name":{"first":"A"}} into {"traits.name.first":"A"} for setValues.
func flattenTraits(prefix string, v any, out map[string]any) {
	obj, ok := v.(map[string]any)
	if !ok {
		if v != nil {
			out[prefix] = v
		}
		return
	}
	for k, child := range obj {
		flattenTraits(fmt.Sprintf("%s.%s", prefix, k), child, out)
	}
}
