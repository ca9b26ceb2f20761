"""The what-if engine behind `horizon-whatif`: a load replayed through KEDA, the HPA, pods and nodes."""
