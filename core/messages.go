package core

import (
	"fmt"
	"time"

	"github.com/latchhq/latch/schemas"
)

// UI messages core produces itself, with Kratos' ids and texts so that UIs that translate by id
// keep working. Schema and password-policy messages come from schemas and core/password.

func errorMessage(id int64, text string, ctx map[string]any) schemas.Message {
	return schemas.Message{ID: id, Text: text, Type: "error", Context: ctx}
}

func msgInvalidCredentials() schemas.Message {
	return errorMessage(4000006, "The provided credentials are invalid, check for spelling mistakes in your password or username, email address, or phone number.", nil)
}

func msgDuplicateIdentifier() schemas.Message {
	return errorMessage(4000007, "An account with the same identifier (email, phone, username, ...) exists already.", nil)
}

func msgRequired(property string) schemas.Message {
	return errorMessage(4000002, fmt.Sprintf("Property %s is missing.", property), map[string]any{"property": property})
}

func msgNewPasswordSameAsOld() schemas.Message {
	return errorMessage(4000039, "The new password must be different from the old password.", nil)
}

func msgSessionAlreadyAvailable() schemas.Message {
	return errorMessage(4000001, "A valid session was detected and thus login is not possible. Did you forget to set `?refresh=true`?", nil)
}

func msgNoStrategy(kind flowKind) schemas.Message {
	switch kind {
	case kindLogin:
		return errorMessage(4010002, "Could not find a strategy to log you in with. Did you fill out the form correctly?", nil)
	case kindSettings:
		return errorMessage(4010004, "Could not find a strategy to update your settings. Did you fill out the form correctly?", nil)
	default:
		return errorMessage(4010003, "Could not find a strategy to sign you up with. Did you fill out the form correctly?", nil)
	}
}

func msgFlowExpired(kind flowKind, expiredAt time.Time) schemas.Message {
	ids := map[flowKind]int64{kindLogin: 4010001, kindRegistration: 4040001, kindSettings: 4050001, kindRecovery: 4060005, kindVerification: 4070005}
	return errorMessage(ids[kind],
		fmt.Sprintf("The %s flow expired %.2f minutes ago, please try again.", kind, time.Since(expiredAt).Minutes()),
		map[string]any{"expired_at": expiredAt, "expired_at_unix": expiredAt.Unix()})
}

func msgSettingsSaved() schemas.Message {
	return schemas.Message{ID: textSettingsSaved, Text: "Your changes have been saved!", Type: "success"}
}
