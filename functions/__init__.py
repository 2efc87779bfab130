"""Azure Functions adapters: thin translations between the Functions runtime and calling/."""
