// Key Vault for the media VM's TLS certificate (the media platform's certificate for its public FQDN).
// RBAC authorization, soft delete and purge protection. The media VM identity reads the certificate's
// secret (Key Vault VM extension); the deploying user may create or import certificates (azd hooks).

param location string
param tags object
param name string

@description('Principal id of the media VM user-assigned identity.')
param mediaPrincipalId string

@description('Object id of the deploying user (creates or imports the media certificate). Empty: none.')
param deployerPrincipalId string = ''

var roles = {
  secretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  certificatesOfficer: 'a4417e6f-fecd-4de8-b567-7b0420556985'
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  //checkov:skip=CKV_AZURE_109: The deploying user's azd hook imports or creates the media certificate from outside Azure, and the media VMs read it over the public endpoint (no private networking in this template); access is Entra RBAC only (no access policies, no keys in settings).
  //checkov:skip=CKV_AZURE_189: Same reason as CKV_AZURE_109: the certificate is imported from the deployer's machine, so the vault's public endpoint stays on; every data-plane call needs an RBAC role on this vault.
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource mediaSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, mediaPrincipalId, roles.secretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.secretsUser)
    principalId: mediaPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource deployerCertificatesOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(vault.id, deployerPrincipalId, roles.certificatesOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.certificatesOfficer)
    principalId: deployerPrincipalId
  }
}

output name string = vault.name
output id string = vault.id
output uri string = vault.properties.vaultUri
