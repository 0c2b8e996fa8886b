package providersim

// segmindRoutes registers the simulated segmind API. (Filled in by the providers issue.)
func (s *Server) segmindRoutes() {}
