// Parameters for app.bicep, read from the environment so the azd outputs can be passed straight in:
//   export FUNCTION_IDENTITY_PRINCIPAL_ID="$(azd env get-value FUNCTION_IDENTITY_PRINCIPAL_ID)"
//   export MEDIA_IDENTITY_PRINCIPAL_ID="$(azd env get-value MEDIA_IDENTITY_PRINCIPAL_ID)"   # with the media VM
// (PowerShell: $env:FUNCTION_IDENTITY_PRINCIPAL_ID = azd env get-value FUNCTION_IDENTITY_PRINCIPAL_ID, and so on)
// Optional: BOT_APP_UNIQUE_NAME, BOT_APP_DISPLAY_NAME, BOT_GRANT_ADMIN_CONSENT (true/false).
using './app.bicep'

param functionIdentityPrincipalId = readEnvironmentVariable('FUNCTION_IDENTITY_PRINCIPAL_ID', '')
param mediaIdentityPrincipalId = readEnvironmentVariable('MEDIA_IDENTITY_PRINCIPAL_ID', '')
param appUniqueName = readEnvironmentVariable('BOT_APP_UNIQUE_NAME', 'teams-calling-bot')
param appDisplayName = readEnvironmentVariable('BOT_APP_DISPLAY_NAME', 'Teams calling bot')
param grantAdminConsent = bool(readEnvironmentVariable('BOT_GRANT_ADMIN_CONSENT', 'true'))
