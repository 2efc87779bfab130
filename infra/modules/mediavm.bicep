// The media VM scale set: Windows Server instances running the app-hosted media service (Microsoft's .NET
// media library runs only on Windows). Deployed only with deployMediaVm = true.
//
// A call is pinned to the instance that answered it, so each instance needs its own public address: by default
// (instancePublicIp) every instance gets an instance-level public IP, as Microsoft's requirements for
// application-hosted media bots demand ("Each VM instance ... must be directly accessible from the internet using
// an instance-level public IP address (ILPIP)"): real-time media (UDP) and the media control plane reach it
// directly. A Standard load balancer's inbound NAT rules also give every instance one frontend port for call
// signaling (TCP 9441) and one for the media control plane (TCP 8445, used only without an instance public IP),
// out of a port range per rule. The instance finds its ports with the load balancer's port-mapping query and its
// own public IP with the scale set's public IP API (a custom role allows just that). Network security
// rules are Microsoft's requirements for application-hosted media bots (Graph docs, "Requirements and
// considerations for application-hosted media bots").
//
// Configuration reaches the instance as userData (JSON, read from the instance metadata service at
// http://169.254.169.254/metadata/instance/compute/userData), so the setup script takes no arguments.

param location string
param tags object

@description('Base name of the media resources (scale set, load balancer, network).')
param namePrefix string

@description('Resource id of the media VM user-assigned identity.')
param identityId string

@description('Client id of the media VM user-assigned identity.')
param identityClientId string

@description('Principal id of the media VM user-assigned identity.')
param identityPrincipalId string

@minValue(0)
@maxValue(100)
param instanceCount int = 1

@description('VM size: at least 4 vCPUs with accelerated networking for real-time media (Dv5: 2 cores minimum, Dv2 or better recommended).')
param vmSize string = 'Standard_D4s_v5'

param adminUsername string = 'mediaadmin'

@secure()
@description('Local administrator password (Windows requires one). No inbound RDP rule exists; use Run Command or Bastion.')
param adminPassword string

@description('Key Vault holding the media certificate.')
param keyVaultName string

@description('Name of the media certificate in the Key Vault (the TLS certificate for the public FQDN).')
param certificateName string

@description('https URL of the setup script in the media artifacts container, downloaded with the VM identity.')
param setupScriptUrl string

@description('Settings for the media service, merged into the instance userData.')
param serviceConfig object

@description('DNS label of the load balancer public IP: <label>.<region>.cloudapp.azure.com. The media certificate must cover the FQDN the media service advertises (this one, or your CNAME to it).')
param dnsLabel string

@description('Give every instance its own public IP (ILPIP), which Microsoft requires for application-hosted media: without it the load balancer (TCP NAT rules only) forwards no UDP media to the instance.')
param instancePublicIp bool = true

@description('Source ranges of Teams media (UDP), the Microsoft 365 "Optimize" ranges (the Graph requirements for application-hosted media bots).')
param teamsMediaSourcePrefixes array = [ '52.112.0.0/14', '52.122.0.0/15' ]

@description('Media control plane port on the instance (the media platform\'s InstanceInternalPort).')
param mediaControlPort int = 8445

@description('Call signaling / notification port on the instance.')
param signalingPort int = 9441

@description('First public port of the media control NAT range (instance n gets one port of the range).')
param mediaControlFrontendPortStart int = 6000

@description('First public port of the signaling NAT range.')
param signalingFrontendPortStart int = 7000

param vnetAddressPrefix string = '10.20.0.0/16'
param subnetAddressPrefix string = '10.20.1.0/24'

var lbName = 'lbe-${namePrefix}'
var frontendName = 'public'
var poolName = 'media'
var mediaControlRuleName = 'media-control'
var signalingRuleName = 'signaling'
// The name of each instance's public IP configuration: setup.ps1 reads the instance's address by it.
var instancePublicIpName = 'instance'
var frontendId = resourceId('Microsoft.Network/loadBalancers/frontendIPConfigurations', lbName, frontendName)
var poolId = resourceId('Microsoft.Network/loadBalancers/backendAddressPools', lbName, poolName)
// Monitoring Reader (built-in): read the Application Insights component (its connection string) and nothing else.
var monitoringReader = '43d0d8ad-25c7-4714-9337-8ba259a9fe05'
var certificateSecretUrl = 'https://${keyVaultName}${environment().suffixes.keyvaultDns}/secrets/${certificateName}'

resource nsg 'Microsoft.Network/networkSecurityGroups@2024-05-01' = {
  name: 'nsg-${namePrefix}'
  location: location
  tags: tags
  properties: {
    // Exactly the Graph app-hosted media rules (Microsoft's requirements for application-hosted media bots). No RDP/SSH. Microsoft does
    // not publish the source addresses of call notifications, hence the AzureCloud service tag.
    securityRules: [
      {
        name: 'MEDIA_CONTROL_PLANE'
        properties: {
          description: 'Media control plane (InstanceInternalPort) from Azure public cloud'
          priority: 100
          direction: 'Inbound'
          access: 'Allow'
          protocol: 'Tcp'
          sourceAddressPrefix: 'AzureCloud'
          sourcePortRange: '*'
          destinationAddressPrefix: '*'
          destinationPortRange: string(mediaControlPort)
        }
      }
      {
        // The Teams media ranges are Microsoft 365 addresses (published by the Microsoft 365 IP address and URL
        // web service), not Azure's: the AzureCloud service tag does not promise to hold them.
        name: 'MEDIA_CONTROL_PLANE_TEAMS'
        properties: {
          description: 'Media control plane (InstanceInternalPort) from the Teams media service'
          priority: 105
          direction: 'Inbound'
          access: 'Allow'
          protocol: 'Tcp'
          sourceAddressPrefixes: teamsMediaSourcePrefixes
          sourcePortRange: '*'
          destinationAddressPrefix: '*'
          destinationPortRange: string(mediaControlPort)
        }
      }
      {
        name: 'CALL_NOTIFICATION'
        properties: {
          description: 'Call signaling and notifications from Azure public cloud'
          priority: 110
          direction: 'Inbound'
          access: 'Allow'
          protocol: 'Tcp'
          sourceAddressPrefix: 'AzureCloud'
          sourcePortRange: '*'
          destinationAddressPrefix: '*'
          destinationPortRange: string(signalingPort)
        }
      }
      {
        name: 'TEAMS_MEDIA_UDP'
        properties: {
          description: 'Real-time media from the Teams media service'
          priority: 120
          direction: 'Inbound'
          access: 'Allow'
          protocol: 'Udp'
          sourceAddressPrefixes: teamsMediaSourcePrefixes
          sourcePortRange: '*'
          destinationAddressPrefix: '*'
          destinationPortRange: '16384-65535'
        }
      }
    ]
  }
}

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: 'vnet-${namePrefix}'
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [ vnetAddressPrefix ]
    }
    subnets: [
      {
        name: 'media'
        properties: {
          addressPrefix: subnetAddressPrefix
          networkSecurityGroup: {
            id: nsg.id
          }
          // Egress goes through the instance public IP (or, without one, the load balancer's outbound rule).
          defaultOutboundAccess: false
        }
      }
    ]
  }
}

resource publicIp 'Microsoft.Network/publicIPAddresses@2024-05-01' = {
  name: 'pip-${namePrefix}'
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Regional'
  }
  properties: {
    publicIPAllocationMethod: 'Static'
    publicIPAddressVersion: 'IPv4'
    dnsSettings: {
      domainNameLabel: dnsLabel
    }
  }
}

resource lb 'Microsoft.Network/loadBalancers@2024-05-01' = {
  name: lbName
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Regional'
  }
  properties: {
    frontendIPConfigurations: [
      {
        name: frontendName
        properties: {
          publicIPAddress: {
            id: publicIp.id
          }
        }
      }
    ]
    backendAddressPools: [
      {
        name: poolName
      }
    ]
    // One rule per port, one frontend port per instance (the rule maps the range over the pool's members).
    inboundNatRules: [
      {
        name: mediaControlRuleName
        properties: {
          frontendIPConfiguration: {
            id: frontendId
          }
          backendAddressPool: {
            id: poolId
          }
          protocol: 'Tcp'
          frontendPortRangeStart: mediaControlFrontendPortStart
          frontendPortRangeEnd: mediaControlFrontendPortStart + 99
          backendPort: mediaControlPort
          enableFloatingIP: false
          enableTcpReset: true
          idleTimeoutInMinutes: 30
        }
      }
      {
        name: signalingRuleName
        properties: {
          frontendIPConfiguration: {
            id: frontendId
          }
          backendAddressPool: {
            id: poolId
          }
          protocol: 'Tcp'
          frontendPortRangeStart: signalingFrontendPortStart
          frontendPortRangeEnd: signalingFrontendPortStart + 99
          backendPort: signalingPort
          enableFloatingIP: false
          enableTcpReset: true
          idleTimeoutInMinutes: 30
        }
      }
    ]
    outboundRules: [
      {
        name: 'egress'
        properties: {
          frontendIPConfigurations: [
            {
              id: frontendId
            }
          ]
          backendAddressPool: {
            id: poolId
          }
          protocol: 'All'
          enableTcpReset: true
          idleTimeoutInMinutes: 15
        }
      }
    ]
  }
}

// Just enough for an instance to learn its own public ports and address: read the load balancer, query the NAT
// mapping and follow that long-running POST's Location (Microsoft.Network/locations/operationResults, outside the
// load balancer's scope: the assignment below is on the resource group, as "Track asynchronous Azure operations"
// requires), and read the instance's own public IP through the scale set.
resource natPortReader 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, lbName, 'nat-port-reader')
  properties: {
    roleName: 'Media NAT port reader (${lbName})'
    description: 'Lets a media VM instance read its inbound NAT port mapping on the media load balancer and its own instance public IP.'
    type: 'CustomRole'
    permissions: [
      {
        actions: [
          'Microsoft.Network/loadBalancers/read'
          'Microsoft.Network/loadBalancers/backendAddressPools/queryInboundNatRulePortMapping/action'
          'Microsoft.Network/locations/operationResults/read'
          'Microsoft.Network/locations/operations/read'
          'Microsoft.Compute/virtualMachineScaleSets/virtualMachines/networkInterfaces/ipConfigurations/publicIPAddresses/read'
        ]
        notActions: []
      }
    ]
    assignableScopes: [
      resourceGroup().id
    ]
  }
}

// On the resource group, not the load balancer: tracking the port-mapping query's result needs permission at the
// resource group level. A new custom role can take a while to replicate: a first provision may fail here with
// RoleDefinitionDoesNotExist; `azd provision` again succeeds (docs/media-vm.md).
resource natPortReaderAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, identityPrincipalId, natPortReader.name)
  properties: {
    // Role assignments take the subscription-level id of a role definition, even one created in a group.
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', natPortReader.name)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The setup script reads the component's connection string with the instance identity (ARM GET), so it is in
// neither userData nor the script; the workers' telemetry itself signs in with the identity (local auth is off).
resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: serviceConfig.applicationInsightsName
}

resource appInsightsReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, identityPrincipalId, monitoringReader)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringReader)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

var instanceConfig = union(serviceConfig, {
  identityClientId: identityClientId
  keyVaultName: keyVaultName
  certificateName: certificateName
  publicFqdn: publicIp.properties.dnsSettings.fqdn
  publicIpAddress: publicIp.properties.ipAddress
  mediaControlPort: mediaControlPort
  signalingPort: signalingPort
  instancePublicIp: instancePublicIp
  instancePublicIpName: instancePublicIpName
  loadBalancer: {
    id: lb.id
    backendPool: poolName
    mediaControlRule: mediaControlRuleName
    signalingRule: signalingRuleName
  }
})

resource vmss 'Microsoft.Compute/virtualMachineScaleSets@2024-07-01' = {
  //checkov:skip=CKV_AZURE_178: The check is for Linux SSH keys; this scale set is Windows Server (the media library needs it) and exposes no SSH or RDP port.
  //checkov:skip=CKV_AZURE_97: Encryption at host needs the EncryptionAtHost feature registered on the subscription, which azd up cannot assume; the OS disk is encrypted at rest by platform-managed keys and holds no call data (recordings go to Blob Storage).
  //checkov:skip=CKV_AZURE_95: Automatic OS image upgrades reimage instances on their own schedule and drop the calls pinned to them; upgrade by adding fresh instances and scaling in drained ones.
  //checkov:skip=CKV_AZURE_177: Windows Update reboots drop the live calls pinned to an instance; patch by rolling new instances (the media library must be refreshed every few months anyway) and scaling in drained ones.
  name: 'vmss-${namePrefix}'
  location: location
  tags: tags
  sku: {
    name: vmSize
    tier: 'Standard'
    capacity: instanceCount
  }
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    orchestrationMode: 'Uniform'
    // Overprovisioned extra VMs would boot, register and be deleted: not for a service that takes calls.
    overprovision: false
    singlePlacementGroup: false
    // Model changes reach instances only when an operator upgrades them (after draining their calls).
    upgradePolicy: {
      mode: 'Manual'
    }
    // A repair deletes and recreates an instance, dropping its calls; an unhealthy media instance is
    // drained and replaced by an operator instead.
    automaticRepairsPolicy: {
      enabled: false
    }
    // Scale-in: never force-delete, and remove the oldest instance first. Before the platform deletes an
    // instance, it gets a Terminate scheduled event (terminateNotificationProfile below) and up to 15
    // minutes to stop taking hand-offs and let its calls finish; the media service approves the event
    // early when it holds no calls.
    scaleInPolicy: {
      rules: [ 'OldestVM' ]
      forceDeletion: false
    }
    virtualMachineProfile: {
      // Regular priority, never Spot: an eviction would drop every live call on the instance, and an
      // evicted instance cannot hand its calls over (calls are pinned to the VM that answered them).
      priority: 'Regular'
      scheduledEventsProfile: {
        terminateNotificationProfile: {
          enable: true
          notBeforeTimeout: 'PT15M'
        }
      }
      osProfile: {
        computerNamePrefix: 'media'
        adminUsername: adminUsername
        adminPassword: adminPassword
        windowsConfiguration: {
          provisionVMAgent: true
          enableAutomaticUpdates: false
          patchSettings: {
            patchMode: 'Manual'
          }
          timeZone: 'UTC'
        }
      }
      storageProfile: {
        imageReference: {
          publisher: 'MicrosoftWindowsServer'
          offer: 'WindowsServer'
          sku: '2022-datacenter-azure-edition'
          version: 'latest'
        }
        osDisk: {
          createOption: 'FromImage'
          caching: 'ReadWrite'
          managedDisk: {
            storageAccountType: 'Premium_LRS'
          }
        }
      }
      securityProfile: {
        securityType: 'TrustedLaunch'
        uefiSettings: {
          secureBootEnabled: true
          vTpmEnabled: true
        }
      }
      diagnosticsProfile: {
        bootDiagnostics: {
          enabled: true
        }
      }
      networkProfile: {
        networkInterfaceConfigurations: [
          {
            name: 'nic'
            properties: {
              primary: true
              enableAcceleratedNetworking: true
              ipConfigurations: [
                {
                  name: 'ipconfig'
                  properties: {
                    primary: true
                    subnet: {
                      id: vnet.properties.subnets[0].id
                    }
                    loadBalancerBackendAddressPools: [
                      {
                        id: poolId
                      }
                    ]
                    publicIPAddressConfiguration: instancePublicIp ? {
                      name: instancePublicIpName
                      sku: {
                        name: 'Standard'
                        tier: 'Regional'
                      }
                      properties: {
                        idleTimeoutInMinutes: 15
                      }
                    } : null
                  }
                }
              ]
            }
          }
        ]
      }
      userData: base64(string(instanceConfig))
      extensionProfile: {
        extensions: [
          {
            // Installs the media certificate (and its renewals) into LocalMachine\My from Key Vault,
            // signing in with the VM identity (Key Vault Secrets User on the vault).
            name: 'KeyVaultForWindows'
            properties: {
              publisher: 'Microsoft.Azure.KeyVault'
              type: 'KeyVaultForWindows'
              typeHandlerVersion: '3.0'
              autoUpgradeMinorVersion: true
              enableAutomaticUpgrade: true
              settings: {
                secretsManagementSettings: {
                  pollingIntervalInS: '3600'
                  requireInitialSync: true
                  observedCertificates: [
                    {
                      url: certificateSecretUrl
                      certificateStoreName: 'MY'
                      certificateStoreLocation: 'LocalMachine'
                      // mediavm/setup/setup.ps1 exports it once as the worker's PEM files (its HTTPS endpoint).
                      keyExportable: true
                    }
                  ]
                }
                authenticationSettings: {
                  msiEndpoint: 'http://169.254.169.254/metadata/identity/oauth2/token'
                  msiClientId: identityClientId
                }
              }
            }
          }
          {
            // Runs mediavm/setup/setup.ps1 (downloaded with the VM identity) once the certificate is in
            // place: installs the media service, binds the certificate, opens the firewall ports.
            name: 'MediaSetup'
            properties: {
              publisher: 'Microsoft.Compute'
              type: 'CustomScriptExtension'
              typeHandlerVersion: '1.10'
              autoUpgradeMinorVersion: true
              provisionAfterExtensions: [ 'KeyVaultForWindows' ]
              protectedSettings: {
                fileUris: [ setupScriptUrl ]
                commandToExecute: 'powershell.exe -NoProfile -ExecutionPolicy Bypass -File ${last(split(setupScriptUrl, '/'))}'
                managedIdentity: {
                  clientId: identityClientId
                }
              }
            }
          }
        ]
      }
    }
  }
  dependsOn: [
    natPortReaderAssignment
    appInsightsReader
  ]
}

output scaleSetName string = vmss.name
output loadBalancerName string = lb.name
output publicFqdn string = publicIp.properties.dnsSettings.fqdn
output publicIpAddress string = publicIp.properties.ipAddress
