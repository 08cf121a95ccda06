module detection-operator.local/pause

go 1.22
